// The service end to end with real qemu: queue/ -> done/ | failed/, concurrency, .img.xz intake,
// rejection, timeout, SIGKILL recovery, graceful SIGTERM.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, readdir, rename, writeFile, copyFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { JobStatus } from '../../src/spool/record.js';
import { HAVE_BASE, REPO, jobrunner, makeJob, qemuProcessesFor, runProc, scratch, waitFor } from '../helpers.js';

interface Spool { root: string; queue: string; done: string; failed: string; args: string[]; env: NodeJS.ProcessEnv }

async function spool(name: string, extra: string[] = []): Promise<Spool> {
  const root = await scratch(name);
  const s = { root, queue: path.join(root, 'queue'), done: path.join(root, 'done'), failed: path.join(root, 'failed') };
  await writeFile(path.join(root, 'config.json'), '{}');
  return { ...s, env: { JOBRUNNER_CONFIG: path.join(root, 'config.json'), JOBRUNNER_LISTEN: 'off' /* not an HTTP test */ },
    args: ['--queue', s.queue, '--done', s.done, '--failed', s.failed, '--settle', '300ms', '--rescan-interval', '2s', '--log-level', 'debug', ...extra] };
}

/** Put a file into the queue the documented way: write elsewhere, rename in. */
async function submit(s: Spool, file: string, as: string): Promise<void> {
  const { mkdir } = await import('node:fs/promises');
  await mkdir(s.queue, { recursive: true });
  await copyFile(file, path.join(s.queue, `.${as}.part`));
  await rename(path.join(s.queue, `.${as}.part`), path.join(s.queue, as));
}

const sha256 = async (f: string): Promise<string> => createHash('sha256').update(await readFile(f)).digest('hex');
const status = async (dir: string, name: string): Promise<JobStatus> => JSON.parse(await readFile(path.join(dir, `${name}.json`), 'utf8')) as JobStatus;

function startService(s: Spool, extra: string[] = []): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  const child = spawn(path.join(REPO, 'jobrunner'), [...s.args, ...extra], { env: { ...process.env, ...s.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, output: () => out, exited };
}

async function runningLease(s: Spool): Promise<{ id: string; qemuPid: number } | null> {
  for (const id of await readdir(path.join(s.queue, '.running')).catch(() => [] as string[])) {
    const l = JSON.parse(await readFile(path.join(s.queue, '.running', id, 'lease.json'), 'utf8').catch(() => 'null')) as { qemuPid: number | null } | null;
    if (l?.qemuPid) return { id, qemuPid: l.qemuPid };
  }
  return null;
}

async function leftovers(s: Spool): Promise<string[]> {
  const out: string[] = [];
  for (const d of [s.done, s.failed]) for (const f of await readdir(d)) if (f.endsWith('.tmp')) out.push(f);
  for (const f of await readdir(path.join(s.queue, '.running')).catch(() => [] as string[])) out.push(`.running/${f}`);
  return out;
}

describe.skipIf(!HAVE_BASE)('jobrunner service (real qemu)', () => {
  let work: string;
  let jobs: Record<string, string>;
  beforeAll(async () => {
    work = await scratch('svc-jobs');
    jobs = {
      hello: await makeJob(work, 'hello', 'echo hello from the service\nmkdir -p /job/output\necho 42 > /job/output/answer'),
      three: await makeJob(work, 'three', 'echo failing with 3\nexit 3'),
      trivial: await makeJob(work, 'trivial', 'mkdir -p /job/output\nhostname > /job/output/host'),
      sleepy: await makeJob(work, 'sleepy', 'echo sleeping forever\nsleep 100000'),
      slow: await makeJob(work, 'slow', 'echo slow job starting\nsleep 20\nmkdir -p /job/output\necho finished > /job/output/done'),
    };
  });

  it('runs a batch with concurrency 2: success, failure, .img.xz input and a rejected junk file', async () => {
    const s = await spool('svc-batch', ['--concurrency', '2', '--timeout', '5m', '--compress-preset', '0']);
    await submit(s, jobs.hello!, 'hello.img');
    await submit(s, jobs.three!, 'three.img');
    for (const n of ['a', 'b', 'c']) await submit(s, jobs.trivial!, `${n}.img`);
    const xz = path.join(work, 'packed.img.xz');
    expect((await runProc('sh', ['-c', `xz -T0 -1 -c "${jobs.hello}" > "${xz}"`])).code).toBe(0);
    await submit(s, xz, 'packed.img.xz');
    const junk = path.join(work, 'junk.img');
    await runProc('dd', ['if=/dev/urandom', `of=${junk}`, 'bs=1M', 'count=1']);
    await submit(s, junk, 'junk.img');

    const svc = startService(s, ['--once']);
    const code = await svc.exited;
    expect(code, svc.output()).toBe(0);

    const hello = await status(s.done, 'hello');
    expect(hello).toMatchObject({ name: 'hello', status: 'succeeded', exitCode: 0, submitted: 'hello.img', accel: 'tcg', attempt: 1 });
    expect(hello.input.sha256).toBe(await sha256(jobs.hello!));
    expect(hello.output!.sha256).toBe(await sha256(path.join(s.done, 'hello.img.xz')));
    expect(hello.output!.preset).toBe(0); // --compress-preset reached the compressor's record
    const meta = JSON.parse(await readFile(path.join(REPO, 'base-image', 'default', 'image.json'), 'utf8')) as { files: Record<string, { sha256: string }> };
    expect(hello.baseImage).toEqual({ name: 'default', sha256: meta.files['root.img']!.sha256 });
    for (const k of ['wait', 'boot', 'run', 'compress'] as const) expect(hello.durations[k]).toBeGreaterThanOrEqual(0);
    expect(await readFile(path.join(s.done, 'hello.log'), 'utf8')).toContain('hello from the service');
    const out = path.join(work, 'hello.out');
    expect((await runProc(path.join(REPO, 'scripts', 'extract'), [path.join(s.done, 'hello.img.xz'), out])).code).toBe(0);
    expect(await readFile(path.join(out, 'output', 'answer'), 'utf8')).toBe('42\n');
    expect((await runProc('xz', ['-t', path.join(s.done, 'hello.img.xz')])).code).toBe(0);

    expect(await status(s.failed, 'three')).toMatchObject({ status: 'failed', exitCode: 3 });
    expect(await readFile(path.join(s.failed, 'three.log'), 'utf8')).toContain('failing with 3');
    expect(await readdir(s.failed)).toContain('three.img.xz');

    const packed = await status(s.done, 'packed');
    expect(packed).toMatchObject({ status: 'succeeded', submitted: 'packed.img.xz' });

    const rejected = await status(s.failed, 'junk');
    expect(rejected).toMatchObject({ status: 'rejected', exitCode: null, output: null });
    expect(rejected.reason).toMatch(/no ext2\/3\/4 superblock/);
    expect(await sha256(path.join(s.failed, 'junk.img'))).toBe(await sha256(junk)); // nothing lost

    const finished = await Promise.all(['a', 'b', 'c', 'hello', 'packed'].map((n) => status(s.done, n)));
    expect(finished.every((f) => f.status === 'succeeded')).toBe(true);
    // Concurrency: at some moment two VMs ran at once, never three.
    const all = [...finished, await status(s.failed, 'three')];
    const overlap = (t: number): number => all.filter((f) => Date.parse(f.startedAt!) <= t && t < Date.parse(f.finishedAt)).length;
    const peak = Math.max(...all.map((f) => overlap(Date.parse(f.startedAt!))));
    expect(peak).toBe(2);
    expect(await readdir(s.queue)).toEqual(['.running']);
    expect(await leftovers(s)).toEqual([]);
  });

  it('kills a job past --timeout: failed/ with status timeout within timeout + 15 s', async () => {
    const s = await spool('svc-timeout', ['--timeout', '20s']);
    await submit(s, jobs.sleepy!, 'sleepy.img');
    const svc = startService(s, ['--once']);
    expect(await svc.exited, svc.output()).toBe(0);
    const st = await status(s.failed, 'sleepy');
    expect(st).toMatchObject({ status: 'timeout', exitCode: null });
    expect(st.reason).toMatch(/past its 20s limit/);
    expect(Date.parse(st.finishedAt) - Date.parse(st.startedAt!)).toBeLessThan(35_000);
    expect(await readFile(path.join(s.failed, 'sleepy.log'), 'utf8')).toContain('sleeping forever');
    expect(await qemuProcessesFor(s.root)).toEqual([]);
  });

  it('survives SIGKILL of the service mid-job: the job finishes after restart, nothing partial, no orphan qemu', async () => {
    const s = await spool('svc-crash', ['--timeout', '5m']);
    await submit(s, jobs.slow!, 'slow.img');
    const svc = startService(s);
    const lease = await waitFor('the job to be running', () => runningLease(s), 120_000);
    await waitFor('console output', async () => (await readFile(path.join(s.queue, '.running', lease.id, 'console.log'), 'utf8').catch(() => '')).includes('slow job starting'), 120_000);
    const st = await jobrunner(['status', '--queue', s.queue, '--done', s.done, '--failed', s.failed]);
    expect(st.stdout).toMatch(/running \(1\):\n {2}slow \[.*\] running for/);
    expect(st.stdout).toContain('> slow job starting');

    expect(await qemuProcessesFor(s.root)).toHaveLength(1); // the check below is not vacuous
    svc.child.kill('SIGKILL');
    await svc.exited;
    // qemu dies with the service (setpriv --pdeathsig): no orphan is left even before a restart.
    await waitFor('qemu to die with the service', async () => (await qemuProcessesFor(s.root)).length === 0, 10_000);

    const again = startService(s, ['--once']);
    expect(await again.exited, again.output()).toBe(0);
    expect(again.output()).toContain('requeued a job interrupted by a previous run');
    const done = await status(s.done, 'slow');
    expect(done).toMatchObject({ status: 'succeeded', attempt: 2 });
    const out = path.join(work, 'slow.out');
    expect((await runProc(path.join(REPO, 'scripts', 'extract'), [path.join(s.done, 'slow.img.xz'), out])).code).toBe(0);
    expect(await readFile(path.join(out, 'output', 'done'), 'utf8')).toBe('finished\n');
    expect(await leftovers(s)).toEqual([]);
    expect(await qemuProcessesFor(s.root)).toEqual([]);
  });

  it('on SIGTERM stops intake, kills the running job after the grace period and requeues it', async () => {
    const s = await spool('svc-term', ['--timeout', '5m', '--shutdown-grace', '2s']);
    await submit(s, jobs.slow!, 'slow.img');
    const svc = startService(s);
    await waitFor('the job to be running', () => runningLease(s), 120_000);
    svc.child.kill('SIGTERM');
    expect(await svc.exited, svc.output()).toBe(0);
    expect(svc.output()).toContain('job requeued');
    expect(await qemuProcessesFor(s.root)).toEqual([]);
    const again = startService(s, ['--once']);
    expect(await again.exited, again.output()).toBe(0);
    // A deliberate stop is not an interrupted attempt.
    expect(await status(s.done, 'slow')).toMatchObject({ status: 'succeeded', attempt: 1 });
    expect(await leftovers(s)).toEqual([]);
  });
});
