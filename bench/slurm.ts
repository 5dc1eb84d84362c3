// See bench/slurm.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { startCluster } from '../test/slurm-cluster.js';
import { copySparse, median, scratchDir, trivialJob, ROOT } from './lib.js';

const runs = Number(process.argv[2] ?? 5);
if (!Number.isInteger(runs) || runs < 1) throw new Error(`bench/slurm: RUNS must be a positive integer, got ${process.argv[2]}`);
const dir = scratchDir('slurm');
const job = trivialJob(dir, 'trivial', 'echo ok', []);
// One node with both cores: the bench measures dispatch, not placement.
const cluster = await startCluster({ nodes: ['b1'], cpusPerNode: 2 });

type Backend = 'local' | 'slurm';
interface Svc { spool: { queue: string; done: string; failed: string }; child: ChildProcess }
function service(backend: Backend): Svc {
  const root = path.join(dir, backend);
  const spool = { queue: path.join(root, 'queue'), done: path.join(root, 'done'), failed: path.join(root, 'failed') };
  for (const d of Object.values(spool)) mkdirSync(d, { recursive: true });
  writeFileSync(path.join(root, 'config.json'), '{}');
  const child = spawn(path.join(ROOT, 'jobrunner'), ['--queue', spool.queue, '--done', spool.done, '--failed', spool.failed,
    // Both cold: Slurm nodes boot cold (docs/SCALE-OUT.md), so a restoring local baseline would
    // measure the start path, not Slurm's dispatch.
    '--backend', backend, '--log-level', 'warn', '--start', 'cold'],
  { env: { ...process.env, ...cluster.env, JOBRUNNER_CONFIG: path.join(root, 'config.json'), JOBRUNNER_LISTEN: 'off' }, stdio: ['ignore', 'inherit', 'inherit'] });
  return { spool, child };
}

const svcs: Record<Backend, Svc> = { local: service('local'), slurm: service('slurm') };
await new Promise((r) => setTimeout(r, 3000)); // let both start (not measured)

/** Drop a copy of the trivial job into the backend's queue; milliseconds until done/NAME.json. */
async function dropToDone(b: Backend, name: string): Promise<number> {
  const { queue, done, failed } = svcs[b].spool;
  const part = path.join(queue, `.${name}.img.part`);
  copySparse(job, part);
  const t = Date.now();
  renameSync(part, path.join(queue, `${name}.img`));
  while (!existsSync(path.join(done, `${name}.json`))) {
    if (existsSync(path.join(failed, `${name}.json`))) throw new Error(`bench/slurm: ${b} job ${name} failed: see ${failed}/${name}.json`);
    if (svcs[b].child.exitCode !== null) throw new Error(`bench/slurm: the ${b} service exited (${svcs[b].child.exitCode})`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return Date.now() - t;
}

const times: Record<Backend, number[]> = { local: [], slurm: [] };
try {
  console.log(`bench/slurm: ${runs} runs each, alternating; a trivial job, drop -> done, local backend vs --backend slurm (1 slurmd on this host)`);
  await dropToDone('local', 'warm'); await dropToDone('slurm', 'warm'); // first boots fill the page cache
  for (let i = 0; i < runs; i++) {
    for (const b of (i % 2 ? ['slurm', 'local'] : ['local', 'slurm']) as Backend[]) {
      const ms = await dropToDone(b, `job${i}`);
      times[b].push(ms);
      console.log(`  run ${i + 1} ${b.padEnd(5)} ${(ms / 1000).toFixed(2)} s`);
    }
  }
} finally {
  for (const s of Object.values(svcs)) s.child.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 2000));
  await cluster.stop();
}
const l = median(times.local); const s = median(times.slurm);
console.log(`median: local ${(l / 1000).toFixed(2)} s, slurm ${(s / 1000).toFixed(2)} s, dispatch overhead ${((s - l) / 1000).toFixed(2)} s`);
// Each round runs both back to back, so the per-round ratio cancels most of a loaded machine's drift.
const paired = median(times.slurm.map((x, i) => x / times.local[i]!));
console.log(`ratio slurm / local = ${(s / l).toFixed(3)} (target <= 1.15) ${s / l <= 1.15 ? 'MET' : 'NOT MET'}; median of per-round ratios ${paired.toFixed(3)}`);
spawn('rm', ['-rf', dir], { stdio: 'ignore' });
