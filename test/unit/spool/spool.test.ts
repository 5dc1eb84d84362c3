// The Spool toolkit on a temp spool: the lock refuses a second live jobrunner only, leases are read
// as kept (with their state), results are listed newest first, and `jobrunner status` shows the
// state from the lease rather than guessing it from startedAt.
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Spool } from '../../../src/spool/spool.js';

const REPO = path.resolve(__dirname, '../../..');
const rootP = mkdtemp(path.join(os.tmpdir(), 'spool-test-'));
afterAll(async () => rm(await rootP, { recursive: true, force: true }));

async function spool(): Promise<Spool> {
  const root = await mkdtemp(path.join(await rootP, 's-'));
  const s = new Spool({ queue: path.join(root, 'queue'), done: path.join(root, 'done'), failed: path.join(root, 'failed') });
  await s.create();
  return s;
}

describe('Spool', () => {
  it('takes its lock, and a stale lock of a dead pid is replaced', async () => {
    const s = await spool();
    await writeFile(s.lockFile, '999999999 5\n');
    await s.lock();
    await s.checkRunningDir();
    await s.unlock();
  });

  it('lists queued entries, leases with their state, and results newest first', async () => {
    const s = await spool();
    await writeFile(path.join(s.queue, 'a.img'), 'x');
    await writeFile(path.join(s.queue, 'b.img.part'), 'x');
    const dir = path.join(s.running, 'id-1');
    await mkdir(dir);
    const t = new Date().toISOString();
    await writeFile(path.join(dir, 'lease.json'), JSON.stringify({
      id: 'id-1', name: 'job', submitted: 'job.img', base: null, compressed: false, attempt: 1,
      servicePid: process.pid, qemuPid: null, submittedAt: t, claimedAt: t, startedAt: t, state: 'failed',
    }));
    for (const [d, n, at] of [[s.done, 'old', '2020-01-01T00:00:00.000Z'], [s.failed, 'new', '2021-01-01T00:00:00.000Z']] as const) {
      await writeFile(path.join(d, `${n}.json`), JSON.stringify({ name: n, status: 'failed', finishedAt: at, publishedAs: n, exitCode: 1, reason: 'r' }));
    }
    expect((await s.queued()).map((q) => q.file)).toEqual(['a.img']);
    expect((await s.leases()).map((l) => [l.id, l.lease.state])).toEqual([['id-1', 'failed']]);
    expect((await s.results()).map((r) => r.status.name)).toEqual(['new', 'old']);

    // `jobrunner status` shows what the lease says (the service is alive: our pid), not 'running'.
    const out = JSON.parse(execFileSync('node', [path.join(REPO, 'dist/cli/jobrunner.js'), 'status', '--json', '--recent', '1',
      '--queue', s.queue, '--done', s.done, '--failed', s.failed], { encoding: 'utf8' })) as { running: Array<{ state: string }>; finished: unknown[] };
    expect(out.running.map((r) => r.state)).toEqual(['failed']);
    expect(out.finished).toHaveLength(1);
  });
});
