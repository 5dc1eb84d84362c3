// --backend slurm end to end: a real Slurm cluster on loopback (munged, slurmctld, two slurmd
// started by the test from a generated slurm.conf, stopped by pid), real qemu on its nodes, the
// real service. Jobs run on both nodes; timeouts, an outside scancel, a node killed mid-job, the
// service killed mid-job, and a node whose cgroup set-up is broken.
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFile, mkdir, readFile, readdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobStatus } from '../../src/spool/record.js';
import { HAVE_BASE, REPO, jobrunner, makeJob, qemuProcessesFor, runProc, scratch, waitFor } from '../helpers.js';
import { addToken, startApiService, upload } from '../http-lib.js';
import { HAVE_SLURM, startCluster, type Cluster } from '../slurm-cluster.js';

interface Spool { root: string; queue: string; done: string; failed: string }

async function newSpool(name: string): Promise<Spool> {
  const root = await scratch(name);
  await writeFile(path.join(root, 'config.json'), '{}');
  return { root, queue: path.join(root, 'queue'), done: path.join(root, 'done'), failed: path.join(root, 'failed') };
}

function service(s: Spool, c: Cluster, extra: string[]): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  const args = ['--queue', s.queue, '--done', s.done, '--failed', s.failed, '--settle', '300ms', '--rescan-interval', '2s',
    '--backend', 'slurm', '--memory', '384M', '--cpus', '1', '--log-level', 'debug', ...extra];
  const child = spawn(path.join(REPO, 'jobrunner'), args, {
    env: { ...process.env, ...c.env, JOBRUNNER_CONFIG: path.join(s.root, 'config.json'), JOBRUNNER_LISTEN: 'off' /* not an HTTP test */ }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  return { child, output: () => out, exited: new Promise((r) => child.on('exit', (code) => r(code))) };
}

async function submit(s: Spool, file: string, as: string): Promise<void> {
  await mkdir(s.queue, { recursive: true });
  await copyFile(file, path.join(s.queue, `.${as}.part`));
  await rename(path.join(s.queue, `.${as}.part`), path.join(s.queue, as));
}

const record = async (dir: string, name: string): Promise<JobStatus | null> =>
  JSON.parse(await readFile(path.join(dir, `${name}.json`), 'utf8').catch(() => 'null')) as JobStatus | null;
const published = async (s: Spool, name: string): Promise<JobStatus | null> => (await record(s.done, name)) ?? record(s.failed, name);

/** The lease of the one running claim, once it names a Slurm job running on a node. */
async function placed(s: Spool): Promise<{ id: string; slurmJobId: number; node: string } | null> {
  for (const id of await readdir(path.join(s.queue, '.running')).catch(() => [] as string[])) {
    const l = JSON.parse(await readFile(path.join(s.queue, '.running', id, 'lease.json'), 'utf8').catch(() => 'null')) as { remote?: { jobId: number; node: string | null } } | null;
    if (l?.remote?.node) return { id, slurmJobId: l.remote.jobId, node: l.remote.node };
  }
  return null;
}

/** The console of a claim shows the job itself has started (not just the guest booting). */
async function consoleHas(s: Spool, id: string, text: string): Promise<boolean> {
  return (await readFile(path.join(s.queue, '.running', id, 'console.log'), 'utf8').catch(() => '')).includes(text);
}

async function extractOutput(img: string, out: string): Promise<string> {
  const r = await runProc(path.join(REPO, 'scripts', 'extract'), [img, out]);
  if (r.code !== 0) throw new Error(`extract failed: ${r.stderr}`);
  return readFile(path.join(out, 'output', 'answer'), 'utf8');
}

describe.skipIf(!HAVE_BASE || !HAVE_SLURM)('--backend slurm (real Slurm on loopback, real qemu)', () => {
  let c: Cluster;
  let work: string;
  let jobs: Record<string, string>;
  beforeAll(async () => {
    c = await startCluster({ nodes: ['n1', 'n2'], cpusPerNode: 2, slurmdTimeout: 10 });
    work = await scratch('slurm-jobs');
    jobs = {
      answer: await makeJob(work, 'answer', 'mkdir -p /job/output\necho "42 from $(cat /etc/debian_version)" > /job/output/answer\necho answered'),
      sleepy: await makeJob(work, 'sleepy', 'echo sleeping forever\nsleep 100000'),
      slow: await makeJob(work, 'slow', 'echo slow job starting\nsleep 25\nmkdir -p /job/output\necho "slow done" > /job/output/answer'),
    };
  });
  afterAll(async () => { await c?.stop(); });

  it('runs 6 jobs on both nodes with concurrency 4; results match the local backend', async () => {
    const s = await newSpool('slurm-six');
    for (let i = 0; i < 6; i++) await submit(s, jobs.answer!, `job${i}.img`);
    const svc = service(s, c, ['--concurrency', '4', '--once', '--timeout', '6m']);
    expect(await svc.exited, svc.output().slice(-3000)).toBe(0);
    const nodes = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const st = await record(s.done, `job${i}`);
      expect(st, `job${i}: ${svc.output().slice(-2000)}`).not.toBeNull();
      expect(st!.status).toBe('succeeded');
      expect(st!.runner?.backend).toBe('slurm');
      expect(st!.runner?.slurmJobId).toBeGreaterThan(0);
      nodes.add(st!.runner!.node!);
    }
    expect([...nodes].sort()).toEqual(['n1', 'n2']);
    const viaSlurm = await extractOutput(path.join(s.done, 'job0.img.xz'), path.join(s.root, 'x0'));
    // The same job through the local backend gives the same result.
    const local = path.join(work, 'local.img');
    await copyFile(jobs.answer!, local);
    const r = await jobrunner(['run', local, '--timeout', '6m', '--quiet', '--memory', '384M', '--cpus', '1']);
    expect(r.code, r.stderr).toBe(0);
    expect(viaSlurm).toBe(await extractOutput(local, path.join(work, 'xl')));
    expect(viaSlurm).toMatch(/^42 from 12\.\d+\n$/);
    expect(await qemuProcessesFor(s.root)).toEqual([]);
  });

  it('a job past its timeout ends timeout, and no qemu is left on any node', async () => {
    const s = await newSpool('slurm-timeout');
    await submit(s, jobs.sleepy!, 'sleepy.img');
    const svc = service(s, c, ['--once', '--timeout', '40s', '--boot-timeout', '3m']);
    expect(await svc.exited, svc.output().slice(-2000)).toBe(0);
    const st = await record(s.failed, 'sleepy');
    expect(st?.status, svc.output().slice(-2000)).toBe('timeout');
    expect(st!.runner?.node).toMatch(/^n[12]$/);
    expect(await qemuProcessesFor(s.root)).toEqual([]);
  });

  it('a Slurm job cancelled from outside ends as an error naming Slurm', async () => {
    const s = await newSpool('slurm-scancel');
    await submit(s, jobs.sleepy!, 'victim.img');
    const svc = service(s, c, ['--once', '--timeout', '6m']);
    const p = await waitFor('the job on a node', () => placed(s), 180_000);
    await waitFor('the job running', () => consoleHas(s, p.id, 'sleeping forever'), 240_000);
    const r = await runProc('scancel', [String(p.slurmJobId)], { env: c.env });
    expect(r.code, r.stderr).toBe(0);
    expect(await svc.exited, svc.output().slice(-2000)).toBe(0);
    const st = await record(s.failed, 'victim');
    expect(st?.status).toBe('error');
    expect(st!.reason).toMatch(/Slurm/);
    expect(await qemuProcessesFor(s.root)).toEqual([]);
  });

  it('a node killed mid-job: the job is run again on the other node, published once', async () => {
    const s = await newSpool('slurm-nodefail');
    await submit(s, jobs.slow!, 'slow.img');
    const svc = service(s, c, ['--once', '--timeout', '6m']);
    const p = await waitFor('the job on a node', () => placed(s), 180_000);
    await waitFor('the job running', () => consoleHas(s, p.id, 'slow job starting'), 240_000);
    await c.killNode(p.node);
    try {
      expect(await svc.exited, svc.output().slice(-3000)).toBe(0);
      const st = await record(s.done, 'slow');
      expect(st?.status, svc.output().slice(-3000)).toBe('succeeded');
      expect(st!.runner?.node).not.toBe(p.node);
      expect(st!.attempt).toBe(2);
      expect(await extractOutput(path.join(s.done, 'slow.img.xz'), path.join(s.root, 'x'))).toBe('slow done\n');
      expect((await readdir(s.done)).filter((f) => f.endsWith('.json'))).toEqual(['slow.json']);
      expect(await readdir(s.failed)).toEqual([]);
    } finally {
      await c.restartNode(p.node);
    }
  });

  it('the service SIGKILLed mid-job re-attaches at restart: the Slurm job is not run twice', async () => {
    const s = await newSpool('slurm-restart');
    await submit(s, jobs.slow!, 'kept.img');
    const first = service(s, c, ['--timeout', '6m']);
    const p = await waitFor('the job on a node', () => placed(s), 180_000);
    await waitFor('the job running', () => consoleHas(s, p.id, 'slow job starting'), 240_000);
    first.child.kill('SIGKILL');
    await first.exited;
    const second = service(s, c, ['--once', '--timeout', '6m']);
    expect(await second.exited, second.output().slice(-3000)).toBe(0);
    const st = await record(s.done, 'kept');
    expect(st?.status, second.output().slice(-3000)).toBe('succeeded');
    expect(st!.runner?.slurmJobId).toBe(p.slurmJobId);
    expect(st!.attempt).toBe(1);
    expect(second.output()).not.toMatch(/killed a qemu left by a previous run/);
    expect((await readdir(s.done)).filter((f) => f.endsWith('.json'))).toEqual(['kept.json']);
  });
});

describe.skipIf(!HAVE_BASE || !HAVE_SLURM)('--backend slurm: a graceful stop and a cancel', () => {
  let c: Cluster;
  let work: string;
  beforeAll(async () => {
    c = await startCluster({ nodes: ['g1'], cpusPerNode: 2 });
    work = await scratch('slurm-stop-jobs');
  });
  afterAll(async () => { await c?.stop(); });

  it('SIGTERM detaches from a running Slurm job; the next start re-attaches to that job (its work image kept), published once', async () => {
    const s = await newSpool('slurm-term');
    await submit(s, await makeJob(work, 'slow', 'echo slow job starting\nsleep 25\nmkdir -p /job/output\necho "slow done" > /job/output/answer'), 'kept.img');
    const first = service(s, c, ['--timeout', '6m', '--shutdown-grace', '2s']);
    const p = await waitFor('the job on a node', () => placed(s), 180_000);
    await waitFor('the job running', () => consoleHas(s, p.id, 'slow job starting'), 240_000);
    first.child.kill('SIGTERM');
    expect(await first.exited, first.output().slice(-2000)).toBe(0);
    await readFile(path.join(s.queue, '.running', p.id, 'work.img')); // kept for the re-attach (throws if gone)
    const second = service(s, c, ['--once', '--timeout', '6m']);
    expect(await second.exited, second.output().slice(-3000)).toBe(0);
    const st = await record(s.done, 'kept');
    expect(st?.status, second.output().slice(-3000)).toBe('succeeded');
    expect(st!.runner?.slurmJobId).toBe(p.slurmJobId);
    expect(await extractOutput(path.join(s.done, 'kept.img.xz'), path.join(s.root, 'x'))).toBe('slow done\n');
    expect((await readdir(s.done)).filter((f) => f.endsWith('.json'))).toEqual(['kept.json']);
  });

  it('a cancel through the API scancels the Slurm job: cancelled, nothing in done/, nothing left running', async () => {
    const root = await scratch('slurm-cancel');
    const api = await startApiService('slurm-cancel', ['--backend', 'slurm', '--memory', '384M', '--cpus', '1', '--timeout', '6m'], root, c.env);
    const s: Spool = { root, queue: api.queue, done: api.done, failed: api.failed };
    try {
      const token = await addToken(api, 'canceller');
      const r = await upload(api, await makeJob(work, 'sleepy', 'echo sleeping forever\nsleep 100000'), 'victim', token);
      expect(r.status, await r.clone().text()).toBe(201);
      const { id } = await r.json() as { id: string };
      const p = await waitFor('the job on a node', () => placed(s), 180_000);
      expect(p.id).toBe(id);
      await waitFor('the job running', () => consoleHas(s, id, 'sleeping forever'), 240_000);
      const d = await fetch(`${api.url}/api/v1/jobs/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
      expect(d.status, await d.clone().text()).toBeLessThan(300);
      const st = await waitFor('the cancelled status', () => record(s.failed, 'victim'), 120_000);
      expect(st.status).toBe('cancelled');
      expect(await record(s.done, 'victim')).toBeNull();
      const q = await runProc('squeue', ['--json', '-t', 'all'], { env: { ...process.env, ...c.env } });
      const mine = JSON.parse(q.stdout) as { jobs: Array<{ job_id: number; job_state: string | string[] }> };
      const state = mine.jobs.find((j) => j.job_id === p.slurmJobId)?.job_state;
      expect([state].flat()).toEqual(['CANCELLED']);
      expect(await qemuProcessesFor(root)).toEqual([]);
    } finally {
      await api.stop();
    }
  });
});

describe.skipIf(!HAVE_BASE || !HAVE_SLURM)('--backend slurm on a node whose cgroup set-up is broken', () => {
  let c: Cluster;
  beforeAll(async () => {
    // proctrack/cgroup without cgroup.conf: slurmd reports jobs COMPLETED 0:0 that never ran.
    c = await startCluster({ nodes: ['b1'], proctrack: 'cgroup', cgroupConf: false });
  });
  afterAll(async () => { await c?.stop(); });

  it('never reports a job that did not run as succeeded', async () => {
    const work = await scratch('slurm-broken');
    const img = await makeJob(work, 'ok', 'echo ok');
    const s = await newSpool('slurm-broken-spool');
    await submit(s, img, 'never.img');
    // One attempt: the node drains after the job it did not run, so a second would wait forever.
    const svc = service(s, c, ['--once', '--timeout', '3m', '--max-attempts', '1']);
    expect(await svc.exited, svc.output().slice(-2000)).toBe(0);
    expect(await record(s.done, 'never')).toBeNull();
    const st = await published(s, 'never');
    expect(st?.status, svc.output().slice(-2000)).toBe('error');
    expect(st!.reason).toMatch(/outside the job.*without running our node command/);
  });
});
