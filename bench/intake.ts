// See bench/intake.
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync, closeSync, openSync } from 'node:fs';
import { lstat, readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { ROOT, scratchDir } from './lib.mjs';

const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
const MB = 1024 * 1024;
const dir = scratchDir('intake');

/** A base image directory that passes the service's start-up check (never booted here). */
function standInBase() {
  const d = path.join(dir, 'base', 'default');
  mkdirSync(d, { recursive: true });
  const files = {};
  for (const f of ['root.img', 'vmlinuz', 'initrd.img']) { writeFileSync(path.join(d, f), 'stand-in\n'); files[f] = { bytes: 9, sha256: '0'.repeat(64) }; }
  writeFileSync(path.join(d, 'image.json'), JSON.stringify({ name: 'default', suite: 'none', arch: 'amd64', kernelVersion: 'none', recipeHash: 'none', builtAt: new Date().toISOString(), files }));
  return path.join(dir, 'base');
}
const base = standInBase();
writeFileSync(path.join(dir, 'c.json'), '{}');

function spool(name, n) {
  const s = { queue: path.join(dir, name, 'queue'), done: path.join(dir, name, 'done'), failed: path.join(dir, name, 'failed') };
  for (const d of Object.values(s)) mkdirSync(d, { recursive: true });
  for (let i = 0; i < n; i++) closeSync(openSync(path.join(s.queue, `flood${i}.img`), 'wx'));
  return s;
}

/** Start the service; resolves with its log lines (parsed), exit code and VmHWM / VmRSS samples. */
function service(s, extra, { stopAfterMs } = {}) {
  const args = ['--queue', s.queue, '--done', s.done, '--failed', s.failed, '--base-image-dir', base, '--run-as', '', '--log-level', 'info', ...extra];
  const t0 = Date.now();
  const c = spawn(path.join(ROOT, 'jobrunner'), args, { env: { ...process.env, JOBRUNNER_CONFIG: path.join(dir, 'c.json') }, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  c.stdout.on('data', (d) => { out += d; });
  let hwm = 0; let rss = 0;
  const sample = setInterval(() => {
    readFile(`/proc/${c.pid}/status`, 'utf8').then((st) => {
      hwm = Math.max(hwm, Number(/^VmHWM:\s+(\d+)/m.exec(st)?.[1] ?? 0) * 1024);
      rss = Number(/^VmRSS:\s+(\d+)/m.exec(st)?.[1] ?? 0) * 1024;
    }, () => undefined);
  }, 100);
  if (stopAfterMs) setTimeout(() => c.kill('SIGTERM'), stopAfterMs);
  return new Promise((resolve) => c.on('exit', (code) => {
    clearInterval(sample);
    const lines = out.split('\n').filter(Boolean).map((l) => { try { return JSON.parse(l); } catch { return { msg: l }; } });
    resolve({ t0, code, lines, hwm, rss, ms: Date.now() - t0 });
  }));
}

const t = (l) => Date.parse(l.time);
const s1 = (ms) => `${(ms / 1000).toFixed(2)} s`;

// Idle: the service on an empty queue, RSS after it settled.
{
  const s = spool('idle', 0);
  const r = await service(s, [], { stopAfterMs: 4000 });
  console.log(`bench/intake: idle service (empty queue, 4 s after start): RSS ${(r.rss / MB).toFixed(0)} MB, peak ${(r.hwm / MB).toFixed(0)} MB (goal idle < 80 MB) ${r.rss < 80 * MB ? 'MET' : 'NOT MET'}`);
}

for (const n of sizes.length ? sizes : [1000, 10000, 50000]) {
  // Baselines on a queue of the same shape: the cheapest look at every file, and a plain copy.
  const b = spool(`base${n}`, n);
  let t1 = Date.now();
  const names = await readdir(b.queue);
  for (let i = 0; i < names.length; i += 64) await Promise.all(names.slice(i, i + 64).map((f) => lstat(path.join(b.queue, f))));
  const scanMs = Date.now() - t1;
  t1 = Date.now();
  execFileSync('sh', ['-c', `cp -r "${b.queue}" "${b.done}/copy" && sync -f "${b.done}"`]);
  const cpMs = Date.now() - t1;
  execFileSync('rm', ['-rf', path.join(dir, `base${n}`)]);

  const s = spool(`svc${n}`, n);
  const r = await service(s, ['--once']);
  const started = r.lines.find((l) => l.msg === 'jobrunner started');
  const rejected = r.lines.filter((l) => l.msg === 'job rejected');
  const totals = r.lines.find((l) => l.msg === 'intake since start') ?? {};
  const progress = r.lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('intake: work')).length;
  const failed = (await readdir(s.failed)).filter((f) => f.endsWith('.json')).length;
  const first = t(rejected[0]) - r.t0; const last = t(rejected.at(-1)) - r.t0; const startup = t(started) - r.t0;
  console.log(`\n${n} empty images: exit ${r.code}, ${failed} rejections in failed/ (${n - failed} missing), ${progress} progress lines`);
  console.log(`  service: start-up ${s1(startup)}, first rejection ${s1(first)}, all claimed and screened ${s1(last)} (${s1(last - startup)} after start-up), exit ${s1(r.ms)}`);
  console.log(`  ${Math.round(n / ((last - first) / 1000 || 1))} claims/s; peak RSS ${(r.hwm / MB).toFixed(0)} MB (limit 200 MB) ${r.hwm < 200 * MB ? 'MET' : 'NOT MET'}; scans ${totals.scans}, writer scans (/proc walks) ${totals.windows}`);
  console.log(`  baselines: readdir+lstat ${s1(scanMs)}, cp -r + sync ${s1(cpMs)}; ratio service/lstat ${((last - startup) / scanMs).toFixed(1)}, service/cp ${((last - startup) / cpMs).toFixed(2)}`);
  if (n === 10000) console.log(`  goal: 10,000 claimed and screened in < 5 s after start-up: ${s1(last - startup)} ${last - startup < 5000 ? 'MET' : 'NOT MET'}`);
  execFileSync('rm', ['-rf', path.join(dir, `svc${n}`)]);
}
execFileSync('rm', ['-rf', dir]);
