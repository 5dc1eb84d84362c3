// Group commit (src/fsync-shared.ts): concurrent callers share a syncfs, run through one
// long-lived helper shell; a helper that dies is replaced and no caller is left hanging.
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { barrierStats, syncShared } from '../../src/fsync-shared.js';

const dirP = mkdtemp(path.join(os.tmpdir(), 'jr-fsync-shared-'));
afterAll(async () => rm(await dirP, { recursive: true, force: true }));

/** Pids of our helper shells (children of this process running the sync loop). */
function helpers(): number[] {
  const out = execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(process.pid)]).toString();
  return out.split('\n').filter((l) => l.includes('sync -f --')).map((l) => Number(l.trim().split(/\s+/)[0]));
}

describe('syncShared', () => {
  it('lets 200 concurrent callers share a few syncfs calls, through one helper', async () => {
    const dir = await dirP;
    const before = barrierStats.syncs;
    await Promise.all(Array.from({ length: 200 }, async (_, i) => { await writeFile(path.join(dir, `f${i}`), 'x'); await syncShared(dir); }));
    const used = barrierStats.syncs - before;
    expect(used).toBeGreaterThan(0);
    expect(used).toBeLessThan(20);
    expect(helpers()).toHaveLength(1);
  });

  it('one helper per file system: a barrier on another file system does not queue behind this one\'s', async () => {
    const dir = await dirP;
    const other = await mkdtemp('/dev/shm/jr-fsync-shared-');
    try {
      expect((await stat(other)).dev).not.toBe((await stat(dir)).dev);
      await Promise.all([syncShared(dir), syncShared(other)]);
      expect(helpers()).toHaveLength(2);
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });

  it('a helper killed while callers wait: they still resolve (direct sync), and the next call starts a new helper', async () => {
    const dir = await dirP;
    const before = helpers();
    await syncShared(dir);
    expect(helpers()).toEqual(before); // this file system's helper was already running
    const pid = before.at(0)!;
    expect(pid).toBeGreaterThan(0);
    const waits = Array.from({ length: 20 }, () => syncShared(dir));
    process.kill(before[0]!, 'SIGKILL');
    process.kill(before[1] ?? before[0]!, 'SIGKILL');
    await expect(Promise.all(waits)).resolves.toBeDefined();
    await syncShared(dir);
    const now = helpers();
    expect(now).toHaveLength(1);
    expect(before).not.toContain(now[0]);
  });
});
