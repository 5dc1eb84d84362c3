// See bench/overhead.
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { loadBaseImage } from '../src/image/base.js';
import { compressFile } from '../src/xz/compress.js';
import { kernelCmdline } from '../src/vm/qemu-args.js';
import type { JobStatus, StartRecord } from '../src/spool/record.js';
import { copySparse, median, scratchDir, trivialJob, ROOT } from './lib.js';

const runs = Number(process.argv[2] ?? 5);
if (!Number.isInteger(runs) || runs < 1) throw new Error(`bench/overhead: RUNS must be a positive integer, got ${process.argv[2]}`);
const base = await loadBaseImage(path.join(ROOT, 'base-image'), 'default');
const dir = scratchDir('overhead');
const job = trivialJob(dir, 'trivial', 'echo ok', []); // mkimage defaults: content + 1 GiB free, sparse ext4
// Two services, one per start mode (issue 13): restore from the saved template (the default) and cold.
type Mode = 'restore' | 'cold';
type Spool = { queue: string; done: string; failed: string };
const spools = {} as Record<Mode, Spool>;
for (const mode of ['restore', 'cold'] as Mode[]) {
  spools[mode] = { queue: path.join(dir, mode, 'queue'), done: path.join(dir, mode, 'done'), failed: path.join(dir, mode, 'failed') };
  for (const d of Object.values(spools[mode])) mkdirSync(d, { recursive: true });
}
writeFileSync(path.join(dir, 'config.json'), '{}');

// The bare baseline: the same guest, kernel, initrd, memory, CPUs and disks, qemu started directly.
function bare(img: string): Promise<number> {
  const args = ['-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot', '-machine', 'pc,accel=tcg', '-cpu', 'max',
    '-m', '1024', '-smp', '2', '-kernel', base.kernel, '-initrd', base.initrd,
    '-append', kernelCmdline({ nonce: 'bench', init: 'construir' }).join(' '), '-serial', 'stdio',
    '-drive', `file=${base.root},format=raw,if=virtio,snapshot=on`, '-drive', `file=${img},format=raw,if=virtio,discard=unmap`];
  const t = Date.now();
  return new Promise((resolve, reject) => {
    const q = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    q.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    q.on('exit', (code) => (out.includes(':exit=0@@') ? resolve(Date.now() - t) : reject(new Error(`bare run failed (${code}): ${out.slice(-300)}`))));
  });
}

// The template (one-time cost): built now if missing, as an operator would with `jobrunner template build`.
const env = { ...process.env, JOBRUNNER_CONFIG: path.join(dir, 'config.json'), JOBRUNNER_LISTEN: 'off' };
const tb = Date.now();
const built = execFileSync(path.join(ROOT, 'jobrunner'), ['template', 'build'], { env }).toString().trim();
console.log(`${built} [${((Date.now() - tb) / 1000).toFixed(1)} s wall for this command]`);
const svcs = (Object.entries(spools) as [Mode, Spool][]).map(([mode, spool]) => spawn(path.join(ROOT, 'jobrunner'),
  ['--queue', spool.queue, '--done', spool.done, '--failed', spool.failed, '--log-level', 'warn', '--start', mode],
  { env, stdio: ['ignore', 'inherit', 'inherit'] }));
await new Promise((r) => setTimeout(r, 3000)); // let them start (not measured)

async function viaService(mode: Mode, i: number | string): Promise<{ ms: number; start: StartRecord | null }> {
  const spool = spools[mode];
  const name = `job${i}`;
  const part = path.join(spool.queue, `.${name}.img.part`);
  copySparse(job, part);
  const t = Date.now();
  renameSync(part, path.join(spool.queue, `${name}.img`));
  const json = path.join(spool.done, `${name}.json`);
  while (!existsSync(json)) {
    if (existsSync(path.join(spool.failed, `${name}.json`))) throw new Error(`job ${name} failed`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const ms = Date.now() - t;
  const st = JSON.parse(readFileSync(json, 'utf8')) as JobStatus;
  // A restore that silently fell back to cold would flatter nothing but hide the point: refuse it.
  if (st.start?.used !== mode) throw new Error(`job ${name} was meant to start by ${mode} but used ${st.start?.used}: ${st.start?.fallback}`);
  return { ms, start: st.start ?? null };
}

type Kind = 'bare' | Mode;
const times: Record<Kind, number[]> = { bare: [], restore: [], cold: [] };
const phases: NonNullable<StartRecord['timings']>[] = [];
console.log(`bench/overhead: ${runs} runs each, rotating order; job image ${(statSync(job).size / 2 ** 30).toFixed(1)} GiB sparse`);
const warm = path.join(dir, 'warm.img'); copySparse(job, warm); await bare(warm);
const t0 = Date.now(); await viaService('restore', 'warm'); // not measured: this service's first restore (page cache)
console.log(`warm-up restore job ${((Date.now() - t0) / 1000).toFixed(2)} s`);
const order: Kind[] = ['bare', 'restore', 'cold'];
for (let i = 0; i < runs; i++) {
  for (const kind of [...order.slice(i % 3), ...order.slice(0, i % 3)]) {
    let ms: number;
    if (kind === 'bare') { const img = path.join(dir, `bare${i}.img`); copySparse(job, img); ms = await bare(img); } else {
      const r = await viaService(kind, i); ms = r.ms;
      if (kind === 'restore' && r.start?.timings) phases.push(r.start.timings);
    }
    times[kind].push(ms);
    console.log(`  run ${i + 1} ${kind.padEnd(7)} ${(ms / 1000).toFixed(2)} s`);
  }
}
for (const svc of svcs) svc.kill('SIGTERM');
const b = median(times.bare); const r = median(times.restore); const c = median(times.cold);
const ph = (k: 'loadMs' | 'diskMs' | 'jobStartMs'): string => (median(phases.map((p) => p[k] ?? NaN)) / 1000).toFixed(2);
console.log(`median: bare cold qemu ${(b / 1000).toFixed(2)} s, drop->done restore ${(r / 1000).toFixed(2)} s, drop->done cold ${(c / 1000).toFixed(2)} s`);
console.log(`restore phases (median, from qemu spawn): state loaded ${ph('loadMs')} s, job disk attached ${ph('diskMs')} s, job started ${ph('jobStartMs')} s`);
console.log(`ratio drop->done restore / bare = ${(r / b).toFixed(3)} (target <= 0.35) ${r / b <= 0.35 ? 'MET' : 'NOT MET'}`);
console.log(`ratio drop->done cold / bare = ${(c / b).toFixed(3)} (target <= 1.15) ${c / b <= 1.15 ? 'MET' : 'NOT MET'}`);
console.log(`ratio drop->done restore / cold = ${(r / c).toFixed(3)}`);

// Compression of the same result image (a finished trivial job's disk): ours vs xz -T0 -6.
const result = path.join(dir, 'bare0.img');
const t1 = Date.now(); execFileSync('sh', ['-c', `xz -T0 -6 -c "${result}" > "${dir}/xzcli.xz"`]); const xzMs = Date.now() - t1;
const cz = await compressFile(result, path.join(dir, 'ours.xz'));
console.log(`compress ${(statSync(result).size / 2 ** 30).toFixed(1)} GiB result image: xz -T0 -6 ${(xzMs / 1000).toFixed(2)} s (${statSync(`${dir}/xzcli.xz`).size} B), ours ${(cz.durationMs / 1000).toFixed(2)} s (${cz.bytesOut} B): ${(xzMs / cz.durationMs).toFixed(1)}x faster`);
execFileSync('rm', ['-rf', dir]);
