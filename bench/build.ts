// See bench/build. One real build (Debian's GNU hello: configure, make, make check) natively on the
// host, under --isolation unshare and (unless --no-vm) in the VM, alternating when --runs > 1.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { copySparse, median, scratchDir, ROOT } from './lib.js';

const argv = process.argv.slice(2);
const flag = (name: string): boolean => argv.includes(name);
const opt = (name: string, def: string): string => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] ?? def : def; };
const runs = Number(opt('--runs', '1'));
const jobs = Number(opt('--jobs', '2'));
// The VM build takes ~15 min under TCG: --vm-runs N (default: --runs) measures it fewer times.
const vmRuns = flag('--no-vm') ? 0 : Number(opt('--vm-runs', String(runs)));
const withVm = vmRuns > 0;
if (!Number.isInteger(runs) || runs < 1 || !Number.isInteger(vmRuns) || vmRuns < 0 || vmRuns > runs) {
  throw new Error('usage: bench/build [--no-vm] [--runs N] [--vm-runs M (0..N)] [--jobs J]');
}

const dir = scratchDir('build');
const src = path.join(dir, 'src');
execFileSync(path.join(ROOT, 'bench', 'hello-source.sh'), [src], { stdio: 'inherit' });
// The same commands everywhere; the job reports its own build time (without sandbox set-up).
const buildCmds = `./configure >/dev/null && make -j${jobs} >/dev/null && make check >/dev/null`;
const tree = path.join(dir, 'job');
mkdirSync(path.join(tree, 'bin'), { recursive: true });
// cp -a: timestamps kept, or make would try to rerun autotools on a tree that looks edited.
const cpa = (from: string, to: string): Buffer => execFileSync('cp', ['-a', '--', from, to]);
cpa(src, path.join(tree, 'src'));
writeFileSync(path.join(tree, 'bin', 'construir'), `#!/bin/sh
set -e
cd /job/src
t0=$(date +%s%N)
${buildCmds}
t1=$(date +%s%N)
echo "BUILD_MS=$(( (t1 - t0) / 1000000 ))"
`);
chmodSync(path.join(tree, 'bin', 'construir'), 0o755);
const image = path.join(dir, 'hello.img');
execFileSync(path.join(ROOT, 'scripts', 'mkimage'), [tree, '-o', image, '--extra', '512M', '--force'], { stdio: 'ignore' });

interface Timing { wall: number; build: number }

function native(): Timing {
  const w = path.join(dir, `native-${Date.now()}`);
  cpa(src, w);
  const t = Date.now();
  const r = spawnSync('sh', ['-c', buildCmds], { cwd: w, env: { PATH: '/usr/local/bin:/usr/bin:/bin', LANG: 'C.UTF-8', HOME: '/root' }, stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) throw new Error(`native build failed (${r.status})`);
  return { wall: Date.now() - t, build: Date.now() - t };
}

/**
 * The host build again with its tree and TMPDIR on a tmpfs (/dev/shm): the sandbox's /tmp is a
 * tmpfs and its /job an ext4 on a loop file, while a host whose root is mounted with online
 * `discard` (as here) pays a discard for every temp file configure and gcc delete. This floor
 * tells isolation overhead from filesystem differences.
 */
function nativeTmpfs(): Timing | null {
  if (!existsSync('/dev/shm')) return null;
  const shm = mkdtempSync('/dev/shm/bench-build-');
  try {
    const w = path.join(shm, 'src');
    cpa(src, w);
    mkdirSync(path.join(shm, 'tmp'));
    const t = Date.now();
    const r = spawnSync('sh', ['-c', buildCmds], { cwd: w, env: { PATH: '/usr/local/bin:/usr/bin:/bin', LANG: 'C.UTF-8', HOME: '/root', TMPDIR: path.join(shm, 'tmp') },
      stdio: ['ignore', 'ignore', 'inherit'] });
    if (r.status !== 0) throw new Error(`native (tmpfs) build failed (${r.status})`);
    return { wall: Date.now() - t, build: Date.now() - t };
  } finally {
    rmSync(shm, { recursive: true, force: true });
  }
}

function viaJobrunner(isolation: 'unshare' | 'vm'): Timing {
  const img = path.join(dir, `run-${isolation}-${Date.now()}.img`);
  copySparse(image, img);
  const log = `${img}.log`;
  const t = Date.now();
  const r = spawnSync(path.join(ROOT, 'jobrunner'), ['run', '--isolation', isolation, '--timeout', '90m', '--quiet', '--log', log, img],
    { env: { ...process.env, JOBRUNNER_PREBUILT: '1' }, stdio: ['ignore', 'ignore', 'inherit'] });
  const wall = Date.now() - t;
  if (r.status !== 0) throw new Error(`${isolation} build failed (exit ${r.status}); log: ${log}`);
  const m = /BUILD_MS=(\d+)/.exec(readFileSync(log, 'utf8'));
  return { wall, build: m ? Number(m[1]) : NaN };
}

// Warm-up (not timed): the unshare runner's one-time shifted copy of the base root, the page cache.
console.log('warm-up: one unshare run of the build (builds the shifted base root on first use)...');
console.log(`warm-up took ${viaJobrunner('unshare').wall} ms`);
const res: Record<'native' | 'nativeTmpfs' | 'unshare' | 'vm', Timing[]> = { native: [], nativeTmpfs: [], unshare: [], vm: [] };
for (let i = 0; i < runs; i++) {
  res.native.push(native());
  const shm = nativeTmpfs();
  if (shm) res.nativeTmpfs.push(shm);
  res.unshare.push(viaJobrunner('unshare'));
  // Printed before the VM's long run, so a run cut short still has these figures.
  console.log(`run ${i + 1}/${runs}: native ${res.native[i]!.wall} ms${shm ? `, native on tmpfs ${shm.wall} ms` : ''}; unshare ${res.unshare[i]!.wall} ms end to end (build ${res.unshare[i]!.build} ms)`);
  if (i < vmRuns) {
    console.log(`run ${i + 1}: VM build (TCG: ~15 min)...`);
    res.vm.push(viaJobrunner('vm'));
    console.log(`run ${i + 1}/${runs}: vm ${res.vm[i]!.wall} ms end to end (build ${res.vm[i]!.build} ms)`);
  }
}
const med = (k: keyof typeof res, f: keyof Timing): number => median(res[k].map((x) => x[f]));
const n = med('native', 'wall');
const fmt = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;
console.log(`\nGNU hello ${path.basename(readdirDsc())}: configure + make -j${jobs} + make check, median of ${runs}${withVm && vmRuns !== runs ? ` (the VM: of ${vmRuns})` : ''}`);
console.log(`  native (host)        ${fmt(n)}`);
const nt = res.nativeTmpfs.length ? med('nativeTmpfs', 'wall') : null;
if (nt !== null) console.log(`  native, tree and TMPDIR on tmpfs ${fmt(nt)}: unshare end to end = ${(med('unshare', 'wall') / nt).toFixed(2)}x this floor, the build alone ${(med('unshare', 'build') / nt).toFixed(2)}x`);
console.log(`  unshare (jobrunner)  ${fmt(med('unshare', 'wall'))} end to end = ${(med('unshare', 'wall') / n).toFixed(2)}x native; the build alone ${fmt(med('unshare', 'build'))} = ${(med('unshare', 'build') / n).toFixed(2)}x (goal <= 1.15x)`);
if (withVm) console.log(`  vm (jobrunner, ${process.env.JOBRUNNER_ACCEL ?? 'auto'})   ${fmt(med('vm', 'wall'))} end to end = ${(med('vm', 'wall') / n).toFixed(2)}x native; the build alone ${fmt(med('vm', 'build'))} = ${(med('vm', 'build') / n).toFixed(2)}x`);
else console.log('  vm                   skipped (--no-vm)');

function readdirDsc(): string {
  const cache = process.env.JOBRUNNER_HELLO_CACHE ?? '/var/cache/jobrunner/hello';
  return execFileSync('sh', ['-c', 'ls "$1"/hello_*.dsc | head -1', 'sh', cache]).toString().trim();
}
