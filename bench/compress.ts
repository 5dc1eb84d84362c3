// Benchmark: our compressFile vs `xz -T0 -6` on the same files, in the same run.
//   (1) a 4 GiB sparse ext4 image holding ~50 MB of files   goal: >= 20x faster
//   (2) a 512 MiB dense ext4 image (no holes)                 goal: >= 1.0x
// The goal compares ours at its default preset (what the service publishes with) against xz's
// default, -6. So that the preset alone cannot carry the result, the same run also times both tools
// at the same preset: `xz -T0 -P` against ours at -P, and both at -6.
// plus peak memory (PSS of the process tree, sampled from /proc every 100 ms), xz -t, and sha256 round trips through both
// `xz -d` and our decompressFile.
// Usage: bench/compress [--only sparse|dense] [--preset P] [--repeat N] [--dir DIR] [--keep]
import { spawn, type StdioOptions } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, availableParallelism } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { CompressResult } from '../src/xz/compress.js';
import { DEFAULT_PRESET } from '../src/xz/compress.js';
import { median, ROOT } from './lib.js';

const MiB = 1 << 20;

// The timed child: one compression or decompression, its result as JSON. Plain node over dist/
// (which bench/compress builds from src/ just before): tsx would add ~0.5 s and ~30 MB to the very
// process whose time and memory are measured. process.argv: [node, what, src, dst, preset?].
const CHILD = `
const [what, src, dst, preset] = process.argv.slice(1);
if (what === 'compress') {
  const { compressFile } = await import(${JSON.stringify(join(ROOT, 'dist', 'xz', 'compress.js'))});
  const { layout, ...r } = await compressFile(src, dst, { preset: preset === undefined ? undefined : Number(preset) });
  console.log(JSON.stringify(r));
} else {
  const { decompressFile } = await import(${JSON.stringify(join(ROOT, 'dist', 'xz', 'decompress.js'))});
  console.log(JSON.stringify(await decompressFile(src, dst, { sizeCap: 2 ** 40 })));
}
`;
const child = (...args: string[]): string[] => [process.execPath, '--input-type=module', '-e', CHILD, ...args];
/** What the child prints for a compression (CompressResult without its layout). */
type ChildResult = Omit<CompressResult, 'layout'>;

const { values: opt } = parseArgs({ options: { only: { type: 'string' }, dir: { type: 'string' }, keep: { type: 'boolean' }, repeat: { type: 'string' }, preset: { type: 'string' } } });
/** Our preset: the service's default unless --preset. */
const P = opt.preset === undefined ? DEFAULT_PRESET : Number(opt.preset);
if (!Number.isInteger(P) || P < 0 || P > 9) throw new Error(`--preset must be 0-9, got ${opt.preset}`);

// --- deterministic content ------------------------------------------------------------------------
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
function randomData(n: number, rnd: () => number): Buffer {
  const b = Buffer.allocUnsafe(n + 4);
  for (let i = 0; i < n; i += 4) b.writeUInt32LE(Math.floor(rnd() * 4294967296), i);
  return b.subarray(0, n);
}
const WORDS = (() => { const r = prng(1); return Array.from({ length: 4000 }, () => Array.from({ length: 2 + Math.floor(r() * 8) }, () => String.fromCharCode(97 + Math.floor(r() * 26))).join('')); })();
const COMPS = ['cc1', 'ld', 'make[2]', 'cmake', 'ninja', 'rustc', 'go', 'javac', 'test-runner', 'dpkg-buildpackage'];
const LEVELS = ['INFO', 'INFO', 'INFO', 'DEBUG', 'WARN', 'ERROR'];
function textData(n: number, rnd: () => number, kind: string): Buffer {
  const parts: string[] = []; let len = 0; let t = 1.7e12;
  const pick = (a: string[]): string => a[Math.floor(rnd() * a.length)]!;
  while (len < n) {
    let l: string;
    if (kind === 'log') {
      t += Math.floor(rnd() * 2000);
      l = `${new Date(t).toISOString()} ${pick(LEVELS)} [${pick(COMPS)}] ${pick(WORDS)} ${pick(WORDS)} id=${Math.floor(rnd() * 1e6).toString(16)} path=/build/src/${pick(WORDS)}/${Math.floor(rnd() * 500)}.c took ${Math.floor(rnd() * 5000)}ms\n`;
    } else {
      l = Array.from({ length: 6 + Math.floor(rnd() * 10) }, () => WORDS[Math.floor(rnd() ** 3 * WORDS.length)]).join(' ') + '.\n';
    }
    parts.push(l); len += l.length;
  }
  return Buffer.from(parts.join('')).subarray(0, n);
}
/** A directory of files totalling `bytes`: half text (logs, prose), half random (like archives). */
function makeTree(dir: string, bytes: number, seed: number): void {
  mkdirSync(dir, { recursive: true });
  const rnd = prng(seed);
  let total = 0;
  for (let i = 0; total < bytes; i++) {
    const n = Math.min(bytes - total, 64 * 1024 + Math.floor(rnd() * 4 * MiB));
    const kind = ['log', 'random', 'prose', 'random'][i % 4]!;
    writeFileSync(join(dir, `f${i}.${kind}`), kind === 'random' ? randomData(n, rnd) : textData(n, rnd, kind));
    total += n;
  }
}

// --- processes, timing, peak RSS of a process tree --------------------------------------------
function treeRss(root: number): number {
  const kids = new Map<number, number[]>();
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const st = readFileSync(`/proc/${p}/stat`, 'utf8');
      const ppid = Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]);
      if (!kids.has(ppid)) kids.set(ppid, []);
      kids.get(ppid)!.push(Number(p));
    } catch { /* exited */ }
  }
  let kb = 0; const todo = [root];
  while (todo.length) {
    const pid = todo.pop()!;
    // PSS, not RSS: a child caught between fork and exec shares all of node's pages, and RSS
    // would count them twice.
    try { kb += Number(/Pss:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0); } catch { /* exited */ }
    todo.push(...(kids.get(pid) ?? []));
  }
  return kb;
}
/** Run argv (under /usr/bin/time for the CPU time of the whole tree, waited-for children included);
 *  stdout to a file or captured. Returns { ms, cpuMs, peakKb, stdout }; throws on failure. */
interface Measured { ms: number; cpuMs: number; peakKb: number; stdout: string }
function measure(argv: string[], { stdoutFile }: { stdoutFile?: string } = {}): Promise<Measured> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const timeFile = join(work, `.time-${process.pid}`);
    let out = '';
    let fd: number | undefined;
    const stdio: StdioOptions = ['ignore', 'pipe', 'inherit'];
    if (stdoutFile) { fd = openSync(stdoutFile, 'w'); stdio[1] = fd; }
    const child = spawn('/usr/bin/time', ['-f', '%U %S', '-o', timeFile, ...argv], { stdio });
    child.stdout?.on('data', (d: Buffer) => { out += d.toString(); });
    let peak = 0;
    const timer = setInterval(() => { peak = Math.max(peak, treeRss(child.pid!)); }, 100);
    child.on('error', reject);
    child.on('close', (code) => {
      clearInterval(timer);
      if (fd !== undefined) closeSync(fd);
      const [u = NaN, sys = NaN] = readFileSync(timeFile, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
      if (code !== 0) reject(new Error(`${argv.join(' ')} exited ${code}`));
      else resolve({ ms: performance.now() - started, cpuMs: (u + sys) * 1000, peakKb: peak, stdout: out });
    });
  });
}
const sh = (cmd: string): Promise<string> => measure(['bash', '-c', cmd]).then((r) => r.stdout.trim());
const sha = (p: string): Promise<string> => sh(`sha256sum < '${p}' | cut -d' ' -f1`);
const secs = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;

// --- the runs ---------------------------------------------------------------------------------------
const work = opt.dir ?? mkdtempSync(join(tmpdir(), 'bench-compress-'));
mkdirSync(work, { recursive: true });
const repeat = Math.max(1, Number(opt.repeat ?? 1));
const fmt = (n: number): string => (n >= 1 << 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : `${(n / MiB).toFixed(1)} MiB`);
const rows: Row[] = [];
console.log(`bench/compress: ${availableParallelism()} CPUs (${cpus()[0]?.model ?? '?'}), ${(await sh('xz --version | head -1'))}, work dir ${work}, ${repeat} run(s) each, alternating`);
console.log(`load average at start: ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);

/** The tools timed on each image, in the order they alternate. `main` is ours at P: the goal's subject. */
interface Tool { label: string; kind: 'xz' | 'ours'; preset: number; out: string; argv: string[] }
type Detail = ChildResult['detail'];
interface Row {
  name: string; size: number; alloc: number; goal: number; checks: string[]; decMs: number; decKb: number; backAlloc: number; xzdMs: number;
  tools: Array<Tool & { ms: number; cpuMs: number; kb: number; bytes: number; detail: Detail | null }>;
  floor: { ms: number; cpuMs: number } | null;
}
function tools(img: string): Tool[] {
  const xz = (p: number): Tool => ({ label: `xz -T0 -${p}`, kind: 'xz', preset: p, out: `${img}.xz${p}.xz`, argv: ['xz', '-T0', `-${p}`, '-k', '-c', img] });
  const ours = (p: number): Tool => ({ label: `compressFile -${p}`, kind: 'ours', preset: p, out: `${img}.ours${p}.xz`, argv: child('compress', img, `${img}.ours${p}.xz`, String(p)) });
  return P === 6 ? [xz(6), ours(6)] : [xz(6), xz(P), ours(P), ours(6)];
}

async function bench(name: string, makeImage: (img: string) => Promise<void>, goal: number, textGlob?: string): Promise<void> {
  const img = join(work, `${name}.img`);
  if (!existsSync(img)) { console.log(`[${name}] building image...`); await makeImage(img); }
  const size = statSync(img).size;
  const alloc = statSync(img).blocks * 512;
  const origSha = await sha(img);
  console.log(`[${name}] ${fmt(size)} image, ${fmt(alloc)} allocated`);
  const ts = tools(img);
  const runs: Measured[][] = ts.map(() => []);
  const details: Array<Detail | null> = ts.map(() => null);
  const floors: Measured[] = [];
  for (let i = 0; i < repeat; i++) {
    // Alternate the tools so load from other work on the machine hits all alike.
    for (const [k, t] of ts.entries()) {
      const m = await measure(t.argv, t.kind === 'xz' ? { stdoutFile: t.out } : {});
      runs[k]!.push(m);
      if (t.kind === 'ours') details[k] = (JSON.parse(m.stdout) as ChildResult).detail;
    }
    if (textGlob && existsSync(join(work, 'tree50'))) {
      // What LZMA at our preset alone costs for the compressible files: xz -T0 -P on just them, in
      // 2 MiB blocks so that xz too keeps every core busy on ~25 MB.
      floors.push(await measure(['bash', '-c', `cat ${textGlob} | xz -T0 -${P} --block-size=2MiB -c > /dev/null`]));
    }
    console.log(`[${name}] run ${i + 1}: ` + ts.map((t, k) => `${t.label} ${secs(runs[k]![i]!.ms)} (cpu ${secs(runs[k]![i]!.cpuMs)})`).join(', '));
  }
  const main = ts.findIndex((t) => t.kind === 'ours' && t.preset === P);
  const ourXz = ts[main]!.out;
  const checks: string[] = [];
  await measure(['xz', '-t', ourXz]).then(() => checks.push('xz -t ok'), () => checks.push('xz -t FAILED'));
  checks.push((await sh(`xz -dc '${ourXz}' | sha256sum | cut -d' ' -f1`)) === origSha ? 'xz -d sha256 ok' : 'xz -d sha256 MISMATCH');
  const dec = await measure(child('decompress', ourXz, `${img}.back`));
  const backAlloc = statSync(`${img}.back`).blocks * 512;
  checks.push((await sha(`${img}.back`)) === origSha ? 'decompressFile sha256 ok' : 'decompressFile sha256 MISMATCH');
  const xzd = await measure(['xz', '-dc', '-T0', ourXz], { stdoutFile: `${img}.back2` });
  rmSync(`${img}.back`); rmSync(`${img}.back2`);
  rows.push({
    name, size, alloc, goal, checks, decMs: dec.ms, decKb: dec.peakKb, backAlloc, xzdMs: xzd.ms,
    tools: ts.map((t, k) => ({
      ...t, ms: median(runs[k]!.map((x) => x.ms)), cpuMs: median(runs[k]!.map((x) => x.cpuMs)), kb: Math.max(...runs[k]!.map((x) => x.peakKb)),
      bytes: statSync(t.out).size, detail: details[k],
    })),
    floor: floors.length ? { ms: median(floors.map((x) => x.ms)), cpuMs: median(floors.map((x) => x.cpuMs)) } : null,
  });
  console.log(`[${name}] ${checks.join(', ')}`);
  if (!opt.keep) for (const t of ts) rmSync(t.out, { force: true });
}

async function mkfs(img: string, tree: string, size: string, dense: boolean): Promise<void> {
  await sh(`mkfs.ext4 -q -F -m 0 -d '${tree}' '${img}' ${size}`);
  // "Dense" means no holes at all: every block allocated, zeros included.
  if (dense) await sh(`cp --sparse=never '${img}' '${img}.tmp' && mv '${img}.tmp' '${img}'`);
}
if (opt.only !== 'dense') {
  await bench('sparse-4G', async (img) => { makeTree(join(work, 'tree50'), 50 * 1000 * 1000, 50); await mkfs(img, join(work, 'tree50'), '4G', false); }, 20,
    `'${join(work, 'tree50')}'/*.log '${join(work, 'tree50')}'/*.prose`);
}
if (opt.only !== 'sparse') {
  await bench('dense-512M', async (img) => { makeTree(join(work, 'tree470'), 470 * MiB, 470); await mkfs(img, join(work, 'tree470'), '512M', true); }, 1);
}

console.log(`load average at end: ${loadavg().map((x) => x.toFixed(2)).join(' ')}\n`);
const pad = (s: string, n: number): string => String(s).padEnd(n);
console.log(pad('image', 12) + pad('tool', 23) + pad('wall', 10) + pad('cpu', 10) + pad('output', 12) + pad('peak PSS', 10) + 'notes');
for (const r of rows) {
  const find = (kind: Tool['kind'], p: number): Row['tools'][number] => r.tools.find((t) => t.kind === kind && t.preset === p)!;
  const xz6 = find('xz', 6); const ours = find('ours', P);
  r.tools.forEach((t, i) => {
    const d = t.detail!;
    const note = t.kind === 'xz' ? (i === 0 ? `${fmt(r.size)} image, ${fmt(r.alloc)} allocated` : '')
      : `lzma ${fmt(d.bytes.lzma)} in ${d.blocks.lzma} blocks, stored ${fmt(d.bytes.store)}, zero ${fmt(d.bytes.zero)}; extents: ${d.extents}`;
    console.log(pad(i === 0 ? r.name : '', 12) + pad(t.label, 23) + pad(secs(t.ms), 10) + pad(secs(t.cpuMs), 10) + pad(fmt(t.bytes), 12) + pad(`${(t.kb / 1024).toFixed(0)} MiB`, 10) + note);
  });
  if (r.floor) console.log(pad('', 12) + pad(`(text files, xz -${P})`, 23) + pad(secs(r.floor.ms), 10) + pad(secs(r.floor.cpuMs), 10) + `what LZMA -${P} on the compressible files alone costs`);
  console.log(pad('', 12) + pad('decompressFile (ours)', 23) + pad(secs(r.decMs), 10) + pad('', 10) + pad(`${fmt(r.backAlloc)} on disk`, 22) + `(xz -dc -T0 of the same file to a file: ${secs(r.xzdMs)})`);
  const speed = xz6.ms / ours.ms;
  console.log(pad('', 12) + `=> GOAL: ours (-${P}) ${speed.toFixed(2)}x faster than xz -T0 -6 (goal >= ${r.goal}x: ${speed >= r.goal ? 'MET' : 'NOT MET'}), cpu ${(xz6.cpuMs / ours.cpuMs).toFixed(2)}x less, ` +
    `size ${(ours.bytes / xz6.bytes).toFixed(4)}x xz -6's, peak PSS ${(ours.kb / xz6.kb).toFixed(2)}x xz's; ${r.checks.join(', ')}`);
  for (const p of [...new Set([P, 6])]) {
    const x = find('xz', p); const o = find('ours', p);
    console.log(pad('', 12) + `=> same preset -${p}: ours ${(x.ms / o.ms).toFixed(2)}x faster than xz -T0 -${p}, cpu ${(x.cpuMs / o.cpuMs).toFixed(2)}x less, size ${(o.bytes / x.bytes).toFixed(4)}x`);
  }
}
if (!opt.keep && !opt.dir) rmSync(work, { recursive: true, force: true });
