// See bench/boot. Times whole VM runs (spawn to qemu exit) of the same trivial job.
import path from 'node:path';
import { loadBaseImage } from '../src/image/base.js';
import { loadSettings } from '../src/config.js';
import { AccelState, runJobVm } from '../src/job/vm-run.js';
import { copySparse, median, scratchDir, trivialJob, ROOT } from './lib.js';

const runs = Number(process.argv[2] ?? 5);
if (!Number.isInteger(runs) || runs < 1) throw new Error(`bench/boot: RUNS must be a positive integer, got ${process.argv[2]}`);
const { settings } = loadSettings(['--timeout', '5m'], { HOME: '/nonexistent' });
const base = await loadBaseImage(path.join(ROOT, 'base-image'), 'default');
const accel = new AccelState(settings.accel);
const dir = scratchDir('boot');
const job = trivialJob(dir);
type Kind = 'ours' | 'stock';
const times: Record<Kind, number[]> = { ours: [], stock: [] };

async function once(kind: Kind): Promise<number> {
  const img = path.join(dir, `run-${kind}.img`);
  copySparse(job, img);
  const out = await runJobVm({ image: img, base, settings, logPath: null, tmpDir: dir, initrd: kind === 'stock' ? base.initrdStock : base.initrd }, accel);
  if (out.end !== 'exited' || out.exitCode !== 0) throw new Error(`${kind} run failed: ${out.reason}`);
  return out.totalMs;
}

console.log(`bench/boot: ${runs} runs each, alternating; accel ${(await accel.get()).accel}; kernel ${base.meta.kernelVersion}`);
console.log(`  initrd sizes: ours ${(base.meta.files['initrd.img']!.bytes / 1e6).toFixed(1)} MB, stock ${((base.meta.files['initrd-stock.img']?.bytes ?? NaN) / 1e6).toFixed(1)} MB`);
await once('ours'); // warm the page cache for both (not counted)
await once('stock');
for (let i = 0; i < runs; i++) {
  for (const kind of (i % 2 ? ['stock', 'ours'] : ['ours', 'stock']) as Kind[]) {
    const ms = await once(kind);
    times[kind].push(ms);
    console.log(`  run ${i + 1} ${kind.padEnd(5)} ${(ms / 1000).toFixed(2)} s`);
  }
}
const ours = median(times.ours);
const stock = median(times.stock);
console.log(`median trivial job: ours ${(ours / 1000).toFixed(2)} s, stock ${(stock / 1000).toFixed(2)} s`);
console.log(`ratio ours/stock = ${(ours / stock).toFixed(3)} (target <= 0.65) ${ours / stock <= 0.65 ? 'MET' : 'NOT MET'}`);
