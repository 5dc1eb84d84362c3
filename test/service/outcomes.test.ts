// The no-qemu tier: one --once run of the real Service (in this process) over a queue whose jobs
// make the fake qemu succeed, fail with a code, hang, crash, flood or never boot; each ends with
// the right status, in the right directory, with its files, and nothing is left behind.
import { copyFile, readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { fixtureJob } from '../lib/fixture-base.js';
import { ls, published, qemuStarts, runOnce, statusOf, tierSpool, type InProcess, type TierSpool } from '../lib/tier.js';

const MODES = ['ok', 'exit-3', 'run-hang', 'no-exit', 'bad-image', 'initramfs-fail', 'hang', 'crash', 'segv', 'console-flood'];

describe('job outcomes through the real service with a fake qemu', () => {
  let t: TierSpool;
  let svc: InProcess;
  beforeAll(async () => {
    t = await tierSpool('outcomes', [], {});
    for (const m of MODES) await copyFile(await fixtureJob(t.root, m, m), path.join(t.queue, `${m}.img`));
    svc = await runOnce(t, ['--concurrency', '4', '--timeout', '8s', '--boot-timeout', '5s', '--log-cap', '65536']);
  }, 120_000);

  it('every job is published exactly once, and its qemu was started once', async () => {
    expect((await published(t)).map((s) => s.submitted).sort()).toEqual(MODES.map((m) => `${m}.img`).sort());
    expect((await qemuStarts(t)).sort()).toEqual([...MODES].sort());
  });

  it('exit 0 is succeeded in done/ with the compressed work image, the log and the status', async () => {
    const st = await statusOf(t, 'ok.img');
    expect(st).toMatchObject({ dir: 'done', status: 'succeeded', exitCode: 0, reason: 'the job succeeded', publishedAs: 'ok', attempt: 1, version: 'tier-test' });
    expect(st.output).toMatchObject({ preset: 1 });
    expect((await stat(path.join(t.done, 'ok.img.xz'))).size).toBe(st.output!.bytes);
    expect(st.baseImage?.name).toBe('default');
    expect(await readFile(path.join(t.done, 'ok.log'), 'utf8')).toMatch(/fake job ran[\s\S]*\[jobrunner\] succeeded: the job succeeded/);
    expect(st.console).toMatchObject({ truncated: false, lastLine: 'fake job ran' });
  });

  it('a non-zero exit is failed with its code, the work image kept', async () => {
    expect(await statusOf(t, 'exit-3.img')).toMatchObject({ dir: 'failed', status: 'failed', exitCode: 3, reason: 'the job exited with status 3' });
    expect(await ls(t.failed)).toEqual(expect.arrayContaining(['exit-3.img.xz', 'exit-3.json', 'exit-3.log']));
  });

  it('a job that hangs after boot times out', async () => {
    expect(await statusOf(t, 'run-hang.img')).toMatchObject({ dir: 'failed', status: 'timeout', exitCode: null, reason: 'the job ran past its 8s limit' });
  });

  it('a guest that stops without an exit status has failed, with the last console line', async () => {
    const st = await statusOf(t, 'no-exit.img');
    expect(st).toMatchObject({ status: 'failed', exitCode: null });
    expect(st.reason).toBe('the guest stopped without reporting an exit status (qemu exit 0); last console line: fake guest powers off early');
  });

  it('a job image the guest cannot mount is rejected and kept untouched as evidence', async () => {
    const st = await statusOf(t, 'bad-image.img');
    expect(st).toMatchObject({ status: 'rejected', output: null });
    expect(st.reason).toMatch(/^the guest could not use the job image \(mount-failed\)/);
    const a = await readFile(path.join(t.failed, 'bad-image.img'));
    expect(a.equals(await readFile(path.join(t.root, 'bad-image.img')))).toBe(true);
  });

  it('boot failures say why: initramfs, no sign of life, qemu start-up error, qemu crash', async () => {
    expect(await statusOf(t, 'initramfs-fail.img')).toMatchObject({ status: 'boot-failed', reason: 'the guest failed to boot: no-root-disk' });
    expect(await statusOf(t, 'hang.img')).toMatchObject({ status: 'boot-failed', reason: 'no sign of life from the guest within 5s' });
    expect((await statusOf(t, 'crash.img')).reason).toMatch(/^qemu failed: fake-qemu: could not initialise the machine/);
    expect(await statusOf(t, 'segv.img')).toMatchObject({ status: 'boot-failed', reason: 'qemu crashed (SIGSEGV) before the guest started' });
  });

  it('a console flood is capped in the log and flagged in the status', async () => {
    const st = await statusOf(t, 'console-flood.img');
    expect(st).toMatchObject({ dir: 'done', status: 'succeeded', console: { truncated: true } });
    expect((await stat(path.join(t.done, 'console-flood.log'))).size).toBeLessThan(65536 + 1024);
  });

  it('nothing is left: no claims, no temp files, the queue empty, the lock released', async () => {
    expect(await ls(path.join(t.queue, '.running'))).toEqual([]);
    expect(await ls(t.queue)).toEqual(['.running']);
    for (const d of [t.done, t.failed]) expect((await readdir(d)).filter((f) => f.startsWith('.'))).toEqual([]);
    expect(svc.logged('stopped')).toHaveLength(1);
  });
});
