// Hostile jobs through --backend slurm (real Slurm on loopback, real qemu on its node): what the
// local backend guarantees holds when the VM runs as a Slurm job. A guest that forges its end
// markers and never powers off is stopped by our watchdog (scancel), not believed; a submission
// whose name is shell syntax never reaches sbatch or a shell; nothing is left running on the node,
// in Slurm or on the host, and nothing is published as a success that was not one.
import { copyFile, readdir, readFile, rename, stat } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSqueueJson } from '../../src/slurm/commands.js';
import { HAVE_BASE, makeJob, qemuProcessesFor, runProc, scratch } from '../helpers.js';
import { HAVE_SLURM, startCluster, type Cluster } from '../slurm-cluster.js';
import { makeSpool, startService, statusOf, type Spool } from './lib/spool.js';

const TIMEOUT_S = 45;
// Reads the marker nonce from its own kernel command line, prints a perfect exit=0/end, then never stops.
const FORGER = `n=$(sed -n 's/.*construir\\.nonce=\\([A-Za-z0-9]*\\).*/\\1/p' /proc/cmdline)
printf '\\n@@construir:%s:exit=0@@\\n@@construir:%s:end@@\\n' "$n" "$n"
echo "faked the end markers; never powering off"
sleep 100000`;
const SHELL_NAME = "x$(touch PWNED);`touch PWNED2`'\".img";

describe.skipIf(!HAVE_BASE || !HAVE_SLURM)('hostile jobs through --backend slurm', () => {
  let c: Cluster;
  let s: Spool;
  let exitCode: number | null;
  let output: string;
  beforeAll(async () => {
    c = await startCluster({ nodes: ['h1'], cpusPerNode: 2 });
    const work = await scratch('adv-slurm-jobs');
    s = await makeSpool('slurm', ['--backend', 'slurm', '--concurrency', '2', '--memory', '384M', '--cpus', '1',
      '--timeout', `${TIMEOUT_S}s`, '--boot-timeout', '4m', '--once']);
    Object.assign(s.env, c.env);
    const forger = await makeJob(work, 'forger', FORGER);
    const named = await makeJob(work, 'named', 'echo "a job with a shell name ran"');
    for (const [i, [img, as]] of ([[forger, 'forger.img'], [named, SHELL_NAME]] as const).entries()) {
      await copyFile(img, path.join(s.queue, `.part-${i}`));
      await rename(path.join(s.queue, `.part-${i}`), path.join(s.queue, as));
    }
    const svc = startService(s, [], []);
    exitCode = await svc.exited;
    output = svc.output();
  }, 600_000);
  afterAll(async () => { await c?.stop(); });

  it('the forged exit=0 is not believed: the watchdog ends it as timeout through scancel', async () => {
    expect(exitCode, output.slice(-3000)).toBe(0);
    const st = await statusOf(s, 'forger.img');
    expect(st).toMatchObject({ dir: 'failed', status: 'timeout', exitCode: null });
    expect(st.runner).toMatchObject({ backend: 'slurm', node: 'h1' });
    expect(await readFile(path.join(s.failed, 'forger.log'), 'utf8')).toContain('never powering off');
  });

  it('a shell-syntax name is data: the job succeeds under its own name (as with the local backend), nothing executed it', async () => {
    const st = await statusOf(s, SHELL_NAME);
    expect(st, output.slice(-3000)).toMatchObject({ dir: 'done', status: 'succeeded' });
    expect(st.publishedAs).toBe(SHELL_NAME.replace(/\.img$/, ''));
    // Where a `touch` would land: the spool, the cluster's dirs, the service's cwd, Slurm's --chdir (/tmp).
    for (const dir of [s.root, s.queue, s.done, c.dir, process.cwd(), '/tmp']) {
      for (const f of ['PWNED', 'PWNED2']) await expect(stat(path.join(dir, f)), `${dir}/${f}`).rejects.toThrow();
    }
  });

  it('nothing is left: no qemu, no Slurm job pending or running, no claim', async () => {
    expect(await qemuProcessesFor(s.root)).toEqual([]);
    const q = await runProc('squeue', ['--json', '-t', 'all'], { env: { ...process.env, ...c.env } });
    expect(q.code, q.stderr).toBe(0);
    const live = parseSqueueJson(q.stdout).filter((j) => ['PENDING', 'RUNNING', 'CONFIGURING', 'COMPLETING', 'SUSPENDED'].includes(j.state));
    expect(live).toEqual([]);
    expect(await readdir(path.join(s.queue, '.running'))).toEqual([]);
    expect((await readdir(s.done)).filter((f) => f.endsWith('.json'))).toHaveLength(1);
  });
});
