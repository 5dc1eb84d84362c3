// Run C: qemu itself misbehaving, with a fake qemu (--qemu) whose behaviour each job image picks:
// never boots, crashes, segfaults, ignores SIGTERM, leaves a child behind, floods stderr or the
// console, or reports how it was started (user, privileges, descriptors). Plus the result of
// run A's header-rewriting guest, resubmitted: it must be refused before any qemu sees it.
import { execFile } from 'node:child_process';
import { copyFile, lstat, readFile, rename, stat } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, expect, it } from 'vitest';
import type { Ctx } from '../lib/context.js';
import { fakeQemu, job } from '../lib/fixtures.js';
import { processesHolding } from '../lib/ledger.js';
import { allStatuses, makeSpool, sha256, startService, statusOf, waitFor, type Spool } from '../lib/spool.js';

const exec = promisify(execFile);
const MODES = ['hang', 'crash', 'segv', 'stubborn', 'forker', 'stderr-flood', 'console-flood', 'report'] as const;
export const FAKE = { bootTimeoutS: 4, timeoutS: 8, killGraceS: 1, logCap: 64 * 1024 };

interface RunC { spool: Spool; code: number | null; output: string; left: number[]; rewrittenSha: string | null }

/** A job image whose content selects the fake qemu's behaviour. */
export function fakeJob(work: string, mode: string, files: Record<string, string> = {}): Promise<string> {
  return job(work, `fake-${mode}`, 'true', { mode: `FAKEQEMU-MODE=${mode}\n`, ...files }, '1M');
}

async function runFake(ctx: Ctx, rewritten: string | null): Promise<RunC> {
  const work = path.join(ctx.work, 'run-c');
  const s = await makeSpool('c', ['--once', '--concurrency', '2', '--boot-timeout', `${FAKE.bootTimeoutS}s`, '--timeout', `${FAKE.timeoutS}s`,
    '--kill-grace', `${FAKE.killGraceS}s`, '--log-cap', `${FAKE.logCap}`]);
  const fake = await fakeQemu(s.root);
  s.args.push('--qemu', fake);
  for (const mode of MODES) {
    await copyFile(await fakeJob(work, mode), path.join(s.queue, `${mode}.img`));
    ctx.ledger.expectResult(s, `${mode}.img`);
  }
  let rewrittenSha: string | null = null;
  if (rewritten) {
    await copyFile(rewritten, path.join(s.queue, 'rewritten.img'));
    rewrittenSha = await sha256(rewritten);
    ctx.ledger.expectResult(s, 'rewritten.img');
  }
  // The same name twice: a second twice.img arrives once the first has been claimed.
  const twice = await fakeJob(work, 'ok');
  await copyFile(twice, path.join(s.queue, 'twice.img'));
  for (let i = 0; i < 2; i++) ctx.ledger.expectResult(s, 'twice.img');
  const svc = startService(s);
  await waitFor('the first twice.img to be claimed', async () => !(await exists(path.join(s.queue, 'twice.img'))), 60_000);
  await copyFile(twice, path.join(s.queue, '.twice.img.part'));
  await rename(path.join(s.queue, '.twice.img.part'), path.join(s.queue, 'twice.img'));
  const code = await svc.exited;
  const left = await processesHolding(s.root);
  ctx.ledger.recordQemuLeft('run C: fake qemu runs (hang, stubborn, forker)', left);
  await ctx.ledger.auditSpool(s);
  return { spool: s, code, output: svc.output(), left, rewrittenSha };
}

const exists = (p: string): Promise<boolean> => lstat(p).then(() => true, () => false);
const reportLines = (log: string): string[] => log.split('\n').filter((l) => l.startsWith('REPORT ')).map((l) => l.slice(7).trim());

/** Register Run C and its cases; `rewritten()` is run A's decompressed header-rewriting result. */
export function fakeQemuCases(ctx: () => Ctx, rewritten: () => string | null): void {
  let c: RunC | null = null;
  const run = (): RunC => { if (!c) throw new Error('run C did not complete'); return c; };
  beforeAll(async () => { c = await runFake(ctx(), rewritten()); });

  it('a qemu that never boots, crashes or segfaults gives boot-failed with the cause; the run still ends by itself', async () => {
    const { spool, code, output } = run();
    expect(code, output.slice(-2000)).toBe(0);
    expect(await statusOf(spool, 'hang.img')).toMatchObject({ status: 'boot-failed', reason: `no sign of life from the guest within ${FAKE.bootTimeoutS}s` });
    expect((await statusOf(spool, 'crash.img')).reason).toMatch(/^qemu failed: .*fake-qemu: could not initialise the machine/);
    expect(await statusOf(spool, 'segv.img')).toMatchObject({ status: 'boot-failed', reason: 'qemu crashed (SIGSEGV) before the guest started' });
  });

  it('a qemu that ignores SIGTERM is SIGKILLed after --kill-grace; timeout is recorded', async () => {
    const st = await statusOf(run().spool, 'stubborn.img');
    expect(st).toMatchObject({ status: 'timeout', reason: `the job ran past its ${FAKE.timeoutS}s limit` });
    expect(Date.parse(st.finishedAt) - Date.parse(st.startedAt!)).toBeLessThan((FAKE.timeoutS + FAKE.killGraceS + 6) * 1000);
    expect(await readFile(path.join(run().spool.failed, 'stubborn.log'), 'utf8')).toContain('ignoring SIGTERM');
  });

  it('a child a qemu leaves behind is killed with its process group: nothing holds spool files afterwards', async () => {
    const { spool, left } = run();
    expect(await readFile(path.join(spool.failed, 'forker.log'), 'utf8')).toMatch(/left a child \d+/);
    // The child holds qemu's console pipe: had it survived, the job would only end when it does (40 s).
    const st = await statusOf(spool, 'forker.img');
    expect(st).toMatchObject({ status: 'boot-failed', reason: `no sign of life from the guest within ${FAKE.bootTimeoutS}s` });
    expect(Date.parse(st.finishedAt) - Date.parse(st.startedAt!)).toBeLessThan((FAKE.bootTimeoutS + FAKE.killGraceS + 10) * 1000);
    expect(left).toEqual([]);
  });

  it('floods on stderr and on the console are bounded (reason and log)', async () => {
    const { spool } = run();
    const err = await statusOf(spool, 'stderr-flood.img');
    expect(err.status).toBe('boot-failed');
    expect(err.reason.length).toBeLessThan(5000);
    const con = await statusOf(spool, 'console-flood.img');
    expect(con).toMatchObject({ status: 'succeeded', console: { truncated: true } });
    expect((await stat(path.join(spool.done, 'console-flood.log'))).size).toBeLessThan(FAKE.logCap + 1024);
  });

  it('qemu is started unprivileged, without capabilities, no_new_privs, with its disks as fds: only the work image writable', async () => {
    const { spool } = run();
    const lines = reportLines(await readFile(path.join(spool.done, 'report.log'), 'utf8'));
    const uid = (await exec('id', ['-u', 'jobrunner-qemu'])).stdout.trim();
    const gid = (await exec('id', ['-g', 'jobrunner-qemu'])).stdout.trim();
    expect(lines).toContain(`uid=${uid} gid=${gid} groups=${gid}`); // no supplementary groups
    for (const want of ['NoNewPrivs:\t1', 'CapEff:\t0000000000000000', 'CapBnd:\t0000000000000000', 'CapPrm:\t0000000000000000']) {
      expect(lines.map((l) => l.replace(/:\s+/, ':\t'))).toContain(want);
    }
    const fds = lines.filter((l) => l.startsWith('fd ')).map((l) => { const [, n, target, flags] = l.split(' '); return { n: Number(n), target: target!, flags: parseInt(flags ?? '0', 8) }; });
    const byFd = new Map(fds.map((f) => [f.n, f]));
    expect(byFd.get(3)!.target).toMatch(/base-image\/default\/root\.img$/);
    expect(byFd.get(3)!.flags & 3).toBe(0);
    expect(byFd.get(4)!.target).toMatch(/\/queue\/\.running\/[\w-]+\/work\.img$/);
    expect(byFd.get(4)!.flags & 3).toBe(2);
    expect(byFd.get(5)!.target).toBe(byFd.get(4)!.target);
    expect(byFd.get(5)!.flags & 3).toBe(0);
    const writableFiles = fds.filter((f) => f.target.startsWith('/') && (f.flags & 3) !== 0 && !f.target.startsWith('/dev/'));
    expect(writableFiles.map((f) => f.target)).toEqual([byFd.get(4)!.target]);
    const argv = lines.find((l) => l.startsWith('argv '))!;
    expect(argv).toContain('-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny');
    expect(argv).not.toContain(spool.root);
  });

  it('the same name submitted twice (the second after the first was claimed) gives NAME and NAME-1', async () => {
    const all = (await allStatuses(run().spool)).filter((x) => x.submitted === 'twice.img');
    expect(all.map((x) => `${x.dir}/${x.publishedAs}:${x.status}`).sort()).toEqual(['done/twice-1:succeeded', 'done/twice:succeeded']);
  });

  it("run A's guest-rewritten image (a qcow2 header naming a host file) is refused on resubmission before any qemu", async () => {
    const { spool, rewrittenSha } = run();
    expect(rewrittenSha, 'run A produced no rewritten image').not.toBeNull();
    const st = await statusOf(spool, 'rewritten.img');
    expect(st).toMatchObject({ status: 'rejected', accel: null });
    expect(st.reason).toMatch(/it is a qcow2 image/);
    expect(await sha256(path.join(spool.failed, `${st.publishedAs}.img`))).toBe(rewrittenSha);
  });
}
