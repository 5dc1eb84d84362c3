// See bench/overhead.
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, writeFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { loadBaseImage } from '../src/image/base.js';
import { compressFile } from '../src/xz/compress.js';
import { kernelCmdline } from '../src/vm/qemu-args.js';
import { copySparse, median, scratchDir, trivialJob, ROOT } from './lib.js';

const runs = Number(process.argv[2] ?? 5);
const base = await loadBaseImage(path.join(ROOT, 'base-image'), 'default');
const dir = scratchDir('overhead');
const job = trivialJob(dir, 'trivial', 'echo ok', []); // mkimage defaults: content + 1 GiB free, sparse ext4
const spool = { queue: path.join(dir, 'queue'), done: path.join(dir, 'done'), failed: path.join(dir, 'failed') };
for (const d of Object.values(spool)) mkdirSync(d, { recursive: true });
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

const svc = spawn(path.join(ROOT, 'jobrunner'), ['--queue', spool.queue, '--done', spool.done, '--failed', spool.failed, '--log-level', 'warn'],
  { env: { ...process.env, JOBRUNNER_CONFIG: path.join(dir, 'config.json'), JOBRUNNER_LISTEN: 'off' }, stdio: ['ignore', 'inherit', 'inherit'] });
await new Promise((r) => setTimeout(r, 3000)); // let it start (not measured)

async function viaService(i: number): Promise<number> {
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
  return Date.now() - t;
}

type Kind = 'bare' | 'service';
const times: Record<Kind, number[]> = { bare: [], service: [] };
console.log(`bench/overhead: ${runs} runs each, alternating; job image ${(statSync(job).size / 2 ** 30).toFixed(1)} GiB sparse`);
const warm = path.join(dir, 'warm.img'); copySparse(job, warm); await bare(warm);
for (let i = 0; i < runs; i++) {
  for (const kind of (i % 2 ? ['service', 'bare'] : ['bare', 'service']) as Kind[]) {
    let ms: number;
    if (kind === 'bare') { const img = path.join(dir, `bare${i}.img`); copySparse(job, img); ms = await bare(img); }
    else ms = await viaService(i);
    times[kind].push(ms);
    console.log(`  run ${i + 1} ${kind.padEnd(7)} ${(ms / 1000).toFixed(2)} s`);
  }
}
svc.kill('SIGTERM');
const b = median(times.bare); const s = median(times.service);
console.log(`median: bare qemu ${(b / 1000).toFixed(2)} s, drop->done ${(s / 1000).toFixed(2)} s`);
console.log(`ratio drop->done / bare = ${(s / b).toFixed(3)} (target <= 1.15) ${s / b <= 1.15 ? 'MET' : 'NOT MET'}`);

// Compression of the same result image (a finished trivial job's disk): ours vs xz -T0 -6.
const result = path.join(dir, 'bare0.img');
const t1 = Date.now(); execFileSync('sh', ['-c', `xz -T0 -6 -c "${result}" > "${dir}/xzcli.xz"`]); const xzMs = Date.now() - t1;
const r = await compressFile(result, path.join(dir, 'ours.xz'));
console.log(`compress ${(statSync(result).size / 2 ** 30).toFixed(1)} GiB result image: xz -T0 -6 ${(xzMs / 1000).toFixed(2)} s (${statSync(`${dir}/xzcli.xz`).size} B), ours ${(r.durationMs / 1000).toFixed(2)} s (${r.bytesOut} B): ${(xzMs / r.durationMs).toFixed(1)}x faster`);
execFileSync('rm', ['-rf', dir]);
