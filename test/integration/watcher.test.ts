// Intake timing with real files and a real slow writer (no VM): a file still being written is not
// reported; a file renamed in complete is reported at once; ignored names never are.
import { spawn } from 'node:child_process';
import { rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { QueueWatcher, type Candidate } from '../../src/spool/watcher.js';
import { scratch } from '../helpers.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('queue watcher', () => {
  let w: QueueWatcher | null = null;
  afterEach(async () => { await w?.close(); w = null; });

  async function watch(dir: string, settleMs: number): Promise<Array<Candidate & { at: number }>> {
    const seen: Array<Candidate & { at: number }> = [];
    w = new QueueWatcher({ dir, settleMs, rescanMs: 60_000, onReady: (c) => seen.push({ ...c, at: Date.now() }), onError: (e) => { throw e; } });
    await w.start();
    return seen;
  }

  it('waits for a slow writer that pauses longer than the quick look, and reports a rename at once', async () => {
    const dir = await scratch('watch');
    const seen = await watch(dir, 1500);
    // Another process writes slowly, pausing longer than the quick look, like a slow `cp`.
    const t0 = Date.now();
    const writer = spawn('sh', ['-c', 'for i in 1 2 3 4; do head -c 65536 /dev/urandom; sleep 0.7; done > "$1"', 'sh', path.join(dir, 'slow.img')]);
    await new Promise((r) => writer.on('exit', r));
    const closedAt = Date.now();
    expect(seen.filter((c) => c.at < closedAt).map((c) => c.file)).not.toContain('slow.img'); // open for writing: not ready

    await writeFile(path.join(dir, '.fast.img.part'), Buffer.alloc(1024, 7));
    const renamedAt = Date.now();
    await rename(path.join(dir, '.fast.img.part'), path.join(dir, 'fast.img'));
    for (let i = 0; i < 40 && seen.length < 2; i++) await sleep(100);

    const slow = seen.find((c) => c.file === 'slow.img');
    const fast = seen.find((c) => c.file === 'fast.img');
    expect(slow && slow.at).toBeGreaterThanOrEqual(closedAt);
    expect(fast && fast.at - renamedAt).toBeLessThan(1000);
    expect(seen.filter((c) => c.file.includes('.part'))).toEqual([]);
    expect(t0).toBeLessThan(closedAt);
  });

  it('finds files that were already there at start (rescan), once each', async () => {
    const dir = await scratch('watch');
    await writeFile(path.join(dir, 'early.img'), 'x');
    await writeFile(path.join(dir, '.hidden.img'), 'x');
    const seen = await watch(dir, 300);
    await sleep(1200);
    await w!.rescan();
    await sleep(800);
    expect(seen.map((c) => c.file)).toEqual(['early.img', 'early.img']); // reported again on rescan; the service dedups by claim
  });
});
