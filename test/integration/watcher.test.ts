// Intake timing with real files and a real slow writer (no VM): a file still being written is not
// reported; a file renamed in complete is reported at once; ignored names never are.
import { spawn } from 'node:child_process';
import { rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { QUICK_LOOK_MS, settleWindow } from '../../src/spool/settle.js';
import { QueueWatcher, type Candidate } from '../../src/spool/watcher.js';
import { scratch } from '../helpers.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('queue watcher', () => {
  let w: QueueWatcher | null = null;
  afterEach(async () => { await w?.close(); w = null; });

  async function watch(dir: string, settleMs: number): Promise<Array<Candidate & { at: number }>> {
    const seen: Array<Candidate & { at: number }> = [];
    w = new QueueWatcher({
      dir, settleMs, rescanMs: 60_000, capacity: () => 100,
      onReady: async (batch) => { for (const c of batch) seen.push({ ...c, at: Date.now() }); return []; },
      onError: (e) => { throw e; },
    });
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

  it('hands over only as many files as the service has room for, and the rest when it has more', async () => {
    const dir = await scratch('watch');
    for (let i = 0; i < 50; i++) await writeFile(path.join(dir, `j${i}.img`), 'x');
    await sleep(250); // older than the quick look
    let room = 3;
    const taken: string[] = [];
    w = new QueueWatcher({
      dir, settleMs: 300, rescanMs: 60_000, capacity: () => room, onError: (e) => { throw e; },
      onReady: async (batch) => {
        const take = batch.slice(0, Math.max(room, 0));
        room -= take.length;
        taken.push(...take.map((c) => c.file));
        // Claimed: gone from the queue, as the service's claim renames it away.
        for (const c of take) await rename(path.join(dir, c.file), path.join(dir, `.claimed-${c.file}`));
        return batch.slice(take.length);
      },
    });
    await w.start();
    await w.rescan();
    expect(taken.length).toBe(3);
    expect(w.busy).toBe(true); // the rest were looked at and wait for room
    room = 100;
    await w.rescan();
    expect(new Set(taken).size).toBe(50); // every file once, none twice
    expect(taken.length).toBe(50);
    expect(w.stats.windows).toBeLessThanOrEqual(w.stats.scans * 2);
  });

  it('settles a window of files with one writer scan: a file held open for writing waits, the others are ready', async () => {
    const dir = await scratch('settle');
    for (let i = 0; i < 200; i++) await writeFile(path.join(dir, `f${i}.img`), 'x');
    // Another process holds one file open for writing (and writes nothing more).
    const holder = spawn('sh', ['-c', 'exec 3>>"$1"; echo open; sleep 30', 'sh', path.join(dir, 'f7.img')]);
    await new Promise((r) => holder.stdout.once('data', r));
    try {
      await sleep(250);
      const names = Array.from({ length: 200 }, (_, i) => `f${i}.img`).concat(['gone.img']);
      const r = await settleWindow(dir, names, 1000, new Map());
      expect(r.waiting).toEqual(['f7.img']);
      expect(r.ready.map((c) => c.file)).toEqual(names.filter((n) => n !== 'f7.img' && n !== 'gone.img')); // order kept, vanished dropped
      if (r.complete) expect(r.retryMs).toBe(1000); // held: looked at again after the settle period
    } finally { holder.kill(); }
  });

  it('waits for the quick look on a file renamed in just now (its ctime is new)', async () => {
    const dir = await scratch('settle');
    await writeFile(path.join(dir, '.a.part'), 'x');
    const t0 = Date.now();
    await rename(path.join(dir, '.a.part'), path.join(dir, 'a.img'));
    const r = await settleWindow(dir, ['a.img'], 2000, new Map());
    const took = Date.now() - t0;
    const need = r.complete ? QUICK_LOOK_MS : 2000;
    if (took < need - 20) { // a loaded machine may take longer than the quick look to get here
      expect(r.ready).toEqual([]);
      expect(r.retryMs).toBeGreaterThan(0);
      expect(r.retryMs).toBeLessThanOrEqual(need);
      await sleep(r.retryMs + 20);
    }
    expect((await settleWindow(dir, ['a.img'], 2000, new Map())).ready.map((c) => c.file)).toEqual(['a.img']);
  });
});
