// Run B: host faults during real runs. qemu is killed from outside; then the service is SIGKILLed
// while one job's VM runs and another job is being compressed. Nothing may be lost or published
// half, no qemu may survive its service, and the restarted service must finish both jobs.
import { readdir, readFile, rename, copyFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { REPO, runProc } from '../../helpers.js';
import type { Ctx } from '../lib/context.js';
import { base64Data, job } from '../lib/fixtures.js';
import { processesHolding } from '../lib/ledger.js';
import { leases, leftovers, makeSpool, sleep, startService, statusOf, waitFor, type Spool } from '../lib/spool.js';

interface RunB {
  spool: Spool;
  /** Files in done/ right after the service was killed mid-compression. */
  doneAtKill: string[];
  /** Processes holding spool files 10 s after the service was killed. */
  leftAfterKill: number[];
  restartOutput: string;
  restartCode: number | null;
  leftovers: string[];
  work: string;
}

async function submit(s: Spool, src: string, name: string): Promise<void> {
  await copyFile(src, path.join(s.queue, `.${name}.part`));
  await rename(path.join(s.queue, `.${name}.part`), path.join(s.queue, name));
}

async function consoleOf(s: Spool, name: string): Promise<string> {
  const l = (await leases(s)).find((x) => x.name === name);
  return l ? readFile(path.join(l.dir, 'console.log'), 'utf8').catch(() => '') : '';
}

async function runKills(ctx: Ctx): Promise<RunB> {
  const work = path.join(ctx.work, 'run-b');
  const sleeper = await job(work, 'sleeper', 'echo sleeper started\nsleep 60\nmkdir -p /job/output\necho finished > /job/output/done');
  const victim = await job(work, 'victim', 'echo victim started\nsleep 100000');
  // ~12 MB of base64: real LZMA work, so compression lasts long enough to be interrupted.
  const bulky = await job(work, 'bulky', 'echo bulky ran', { 'data.txt': await base64Data(9_000_000) }, '8M');
  // Preset 6 (not the default 1): ~4 s of compression instead of ~0.6 s, against a 250 ms poll.
  const s = await makeSpool('b', ['--concurrency', '2', '--timeout', '5m', '--compress-preset', '6']);
  for (const n of ['sleeper.img', 'victim.img', 'bulky.img']) ctx.ledger.expectResult(s, n);
  await submit(s, sleeper, 'sleeper.img');
  await submit(s, victim, 'victim.img');

  const svc = startService(s);
  const running = await waitFor('sleeper and victim to run', async () => {
    const ls = await leases(s);
    const ok = ls.filter((l) => l.qemuPid);
    if (ok.length < 2) return null;
    return (await consoleOf(s, 'sleeper')).includes('sleeper started') && (await consoleOf(s, 'victim')).includes('victim started') ? ok : null;
  }, 180_000);
  // qemu killed from outside (as the host's OOM killer would): only that job fails, with the cause.
  const vpid = running.find((l) => l.name === 'victim')!.qemuPid!;
  expect((await readFile(`/proc/${vpid}/cmdline`, 'utf8')).split('\0')[0]).toMatch(/qemu-system/);
  process.kill(vpid, 'SIGKILL');
  await waitFor('the victim status', () => statusOf(s, 'victim.img').catch(() => null), 60_000);

  await submit(s, bulky, 'bulky.img');
  await waitFor('bulky to be compressing', async () => {
    const tmp = (await readdir(s.done)).find((f) => f.startsWith('.bulky.img.xz.') && f.endsWith('.tmp'));
    return tmp !== undefined;
  }, 180_000);
  const sleeperLease = (await leases(s)).find((l) => l.name === 'sleeper');
  expect(sleeperLease?.qemuPid, 'the sleeper VM must still be running when the service is killed').toBeTruthy();
  svc.child.kill('SIGKILL');
  await svc.exited;
  const doneAtKill = (await readdir(s.done)).filter((f) => !f.startsWith('.'));
  // setpriv --pdeathsig: qemu dies with its service. Give the kernel a moment, then count.
  const t = Date.now();
  let left = await processesHolding(s.root);
  while (left.length > 0 && Date.now() - t < 10_000) { await sleep(250); left = await processesHolding(s.root); }
  ctx.ledger.recordQemuLeft('run B: service SIGKILLed mid-run and mid-compression', left);

  const again = startService(s, ['--once']);
  const restartCode = await again.exited;
  ctx.ledger.recordQemuLeft('run B: after the restarted --once run', await processesHolding(s.root));
  await ctx.ledger.auditSpool(s);
  return { spool: s, doneAtKill, leftAfterKill: left, restartOutput: again.output(), restartCode, leftovers: await leftovers(s), work };
}

/** Register Run B and its cases. */
export function killCases(ctx: () => Ctx): void {
  let b: RunB | null = null;
  const run = (): RunB => { if (!b) throw new Error('run B did not complete'); return b; };
  beforeAll(async () => { b = await runKills(ctx()); });

  it('qemu killed from outside: that job ends as error with the signal named; the service goes on', async () => {
    const st = await statusOf(run().spool, 'victim.img');
    expect(st).toMatchObject({ status: 'error', dir: 'failed', exitCode: null });
    expect(st.reason).toMatch(/qemu was killed by SIGKILL from outside jobrunner .* while the job ran/);
  });

  it('SIGKILL of the service: its qemu dies with it, and nothing half-compressed is visible under a final name', () => {
    const r = run();
    expect(r.leftAfterKill).toEqual([]);
    expect(r.doneAtKill).toEqual([]);
  });

  it('after the restart both interrupted jobs finish: temp files swept, attempts counted, results complete', async () => {
    const r = run();
    expect(r.restartCode, r.restartOutput.slice(-3000)).toBe(0);
    expect(r.restartOutput).toContain('removed temp files left by a previous run');
    const sleeper = await statusOf(r.spool, 'sleeper.img');
    expect(sleeper).toMatchObject({ status: 'succeeded', attempt: 2 });
    const bulky = await statusOf(r.spool, 'bulky.img');
    expect(bulky).toMatchObject({ status: 'succeeded', attempt: 2 });
    expect((await runProc('xz', ['-t', path.join(r.spool.done, 'bulky.img.xz')])).code).toBe(0);
    const out = path.join(r.work, 'sleeper.out');
    expect((await runProc(path.join(REPO, 'scripts', 'extract'), [path.join(r.spool.done, 'sleeper.img.xz'), out])).code).toBe(0);
    expect(await readFile(path.join(out, 'output', 'done'), 'utf8')).toBe('finished\n');
    expect(r.leftovers).toEqual([]);
  });
}
