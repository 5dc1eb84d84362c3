// A flood of junk: 10,000 and 50,000 empty *.img dropped into queue/ before the real service
// starts (./jobrunner --once). Empty images are rejected before any VM, so no qemu and no real base
// image are needed (a stand-in base image only has to pass the start-up check). Every file must end
// in failed/ as rejected with its evidence, none lost or doubled, with the service's peak RSS
// (VmHWM) under 200 MB, and progress in the log. The time limit is generous for a loaded 2-core
// machine; the speed goal is bench/intake's.
import { spawn } from 'node:child_process';
import { mkdir, open, readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO, scratch } from '../helpers.js';

const MB = 1024 * 1024;

/** A base image directory that passes loadBaseImage (its files are never booted here). */
async function standInBase(root: string): Promise<string> {
  const dir = path.join(root, 'base', 'default');
  await mkdir(dir, { recursive: true });
  const files: Record<string, { bytes: number; sha256: string }> = {};
  for (const f of ['root.img', 'vmlinuz', 'initrd.img']) {
    await writeFile(path.join(dir, f), 'stand-in\n');
    files[f] = { bytes: 9, sha256: '0'.repeat(64) };
  }
  await writeFile(path.join(dir, 'image.json'), JSON.stringify({ name: 'default', suite: 'none', arch: 'amd64', kernelVersion: 'none', recipeHash: 'none', builtAt: new Date().toISOString(), files }));
  return path.join(root, 'base');
}

async function emptyFiles(queue: string, n: number): Promise<void> {
  await mkdir(queue, { recursive: true });
  for (let i = 0; i < n; i += 500) {
    await Promise.all(Array.from({ length: Math.min(500, n - i) }, async (_, k) => (await open(path.join(queue, `flood${i + k}.img`), 'wx')).close()));
  }
}

interface Run { code: number | null; log: string; peakRss: number; ms: number }

/** ./jobrunner --once on the spool under `root`, sampling its VmHWM (peak RSS) until it exits. */
function serviceOnce(root: string, base: string, limitMs: number): Promise<Run> {
  const args = ['--once', '--queue', path.join(root, 'queue'), '--done', path.join(root, 'done'), '--failed', path.join(root, 'failed'),
    '--base-image-dir', base, '--run-as', '', '--log-level', 'info'];
  const t0 = Date.now();
  const c = spawn(path.join(REPO, 'jobrunner'), args, { env: { ...process.env, JOBRUNNER_CONFIG: path.join(root, 'c.json') } });
  let log = '';
  c.stdout.on('data', (d: Buffer) => { log += d.toString(); });
  c.stderr.on('data', (d: Buffer) => { log += d.toString(); });
  let peakRss = 0;
  // ./jobrunner execs node, so the pid is the service's; VmHWM is its high-water mark so far.
  const sample = setInterval(() => {
    void readFile(`/proc/${c.pid}/status`, 'utf8').then((s) => {
      const kb = Number(/^VmHWM:\s+(\d+)/m.exec(s)?.[1] ?? 0);
      peakRss = Math.max(peakRss, kb * 1024);
    }, () => undefined);
  }, 100);
  const kill = setTimeout(() => c.kill('SIGKILL'), limitMs);
  return new Promise((resolve) => c.on('exit', (code) => {
    clearInterval(sample);
    clearTimeout(kill);
    resolve({ code, log, peakRss, ms: Date.now() - t0 });
  }));
}

async function flood(n: number, limitMs: number): Promise<void> {
  const root = await scratch(`flood${n}`);
  await writeFile(path.join(root, 'c.json'), '{}');
  const base = await standInBase(root);
  await emptyFiles(path.join(root, 'queue'), n);
  const r = await serviceOnce(root, base, limitMs);
  const summary = `exit ${r.code} after ${(r.ms / 1000).toFixed(1)} s, peak RSS ${(r.peakRss / MB).toFixed(0)} MB`;
  console.log(`intake flood of ${n} empty images: ${summary}`);
  expect(r.code, `${summary}\n${r.log.slice(-2000)}`).toBe(0);
  expect(r.peakRss).toBeGreaterThan(0);
  expect(r.peakRss, summary).toBeLessThan(200 * MB);

  // Nothing lost, nothing doubled: every submitted name is published exactly once, as rejected, with its evidence.
  expect((await readdir(path.join(root, 'queue'))).filter((f) => !f.startsWith('.'))).toEqual([]);
  expect(await readdir(path.join(root, 'queue', '.running'))).toEqual([]);
  expect(await readdir(path.join(root, 'done'))).toEqual([]);
  const failed = await readdir(path.join(root, 'failed'));
  const json = failed.filter((f) => f.endsWith('.json'));
  expect(json.length).toBe(n);
  expect(failed.filter((f) => f.endsWith('.img')).length).toBe(n);
  const names = new Set<string>();
  for (let i = 0; i < json.length; i += 1000) {
    for (const st of await Promise.all(json.slice(i, i + 1000).map(async (f) => JSON.parse(await readFile(path.join(root, 'failed', f), 'utf8')) as { name: string; status: string; reason: string; publishedAs: string }))) {
      expect(st.status).toBe('rejected');
      expect(st.reason).toMatch(/empty \(0 bytes\)/);
      expect(st.publishedAs).toBe(st.name); // no collisions among distinct names
      names.add(st.name);
    }
  }
  expect(names.size).toBe(n);
  for (const i of [0, n >> 1, n - 1]) expect(names.has(`flood${i}`)).toBe(true);

  // Progress was logged while the flood was worked off.
  const progress = r.log.split('\n').filter((l) => l.includes('intake: work'));
  expect(progress.length, r.log.slice(-2000)).toBeGreaterThan(0);
  expect(progress.at(-1)).toMatch(/"rejected":\d+/);
}

describe('intake under a flood (no VM: empty images are rejected before boot)', () => {
  it('10,000 queued empty images all end rejected in failed/, in bounded memory', { timeout: 900_000 }, () => flood(10_000, 880_000));
  it('50,000 queued empty images all end rejected in failed/, in bounded memory', { timeout: 2_400_000 }, () => flood(50_000, 2_380_000));
});
