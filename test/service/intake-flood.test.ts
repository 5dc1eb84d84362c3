// A flood of junk: 10,000 and 50,000 empty *.img dropped into queue/ before the real service
// starts. Empty images are rejected before any VM, so no qemu and no real base image are needed (a
// stand-in base image only has to pass the start-up check). 10,000: ./jobrunner --once works the
// whole queue off; every file ends in failed/ as rejected with its evidence, none lost or doubled.
// 50,000: the service runs until it has rejected a few thousand and is stopped (SIGTERM); every
// file is then either still queued or rejected with its status file, no claim is left behind. In
// both the service's peak RSS (VmHWM) stays under 200 MB and progress is logged; `jobrunner status`
// on the full queue summarises it. Time limits are generous for a loaded 2-core machine; the
// speed goal is bench/intake's.
import { spawn } from 'node:child_process';
import { mkdir, open, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { jobrunner, REPO, scratch } from '../helpers.js';

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

/** ./jobrunner on the spool under `root`, sampling its VmHWM (peak RSS) until it exits; `stop` resolves
 *  when the service should get SIGTERM (without it: --once). */
function service(root: string, base: string, limitMs: number, stop?: (log: () => string) => Promise<void>): Promise<Run> {
  const args = [...(stop ? [] : ['--once']), '--queue', path.join(root, 'queue'), '--done', path.join(root, 'done'), '--failed', path.join(root, 'failed'),
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
  if (stop) void stop(() => log).then(() => c.kill('SIGTERM'));
  return new Promise((resolve) => c.on('exit', (code) => {
    clearInterval(sample);
    clearTimeout(kill);
    resolve({ code, log, peakRss, ms: Date.now() - t0 });
  }));
}

function spoolArgs(root: string): string[] {
  return ['--queue', path.join(root, 'queue'), '--done', path.join(root, 'done'), '--failed', path.join(root, 'failed')];
}

interface Rejection { name: string; status: string; reason: string; publishedAs: string }

/** Every NAME.json in failed/, checked to be an empty image's rejection with its evidence beside it. */
async function rejections(root: string): Promise<Set<string>> {
  const failed = await readdir(path.join(root, 'failed'));
  const json = failed.filter((f) => f.endsWith('.json'));
  const imgs = new Set(failed.filter((f) => f.endsWith('.img')));
  const names = new Set<string>();
  for (let i = 0; i < json.length; i += 1000) {
    for (const st of await Promise.all(json.slice(i, i + 1000).map(async (f) => JSON.parse(await readFile(path.join(root, 'failed', f), 'utf8')) as Rejection))) {
      expect(st.status).toBe('rejected');
      expect(st.reason).toMatch(/empty \(0 bytes\)/);
      expect(st.publishedAs).toBe(st.name); // no collisions among distinct names
      expect(imgs.has(`${st.name}.img`), `${st.name}.img (the evidence)`).toBe(true);
      names.add(st.name);
    }
  }
  expect(names.size).toBe(json.length);
  return names;
}

async function setUp(n: number): Promise<{ root: string; base: string }> {
  const root = await scratch(`flood${n}`);
  await writeFile(path.join(root, 'c.json'), '{}');
  const base = await standInBase(root);
  await emptyFiles(path.join(root, 'queue'), n);
  await mkdir(path.join(root, 'done'));
  await mkdir(path.join(root, 'failed'));
  return { root, base };
}

function checkRun(r: Run, n: number): void {
  const summary = `exit ${r.code} after ${(r.ms / 1000).toFixed(1)} s, peak RSS ${(r.peakRss / MB).toFixed(0)} MB`;
  console.log(`intake flood of ${n} empty images: ${summary}`);
  expect(r.code, `${summary}\n${r.log.slice(-2000)}`).toBe(0);
  expect(r.peakRss).toBeGreaterThan(0);
  expect(r.peakRss, summary).toBeLessThan(200 * MB);
  // Progress was logged while the flood was worked off.
  const progress = r.log.split('\n').filter((l) => l.includes('intake: work'));
  expect(progress.length, r.log.slice(-2000)).toBeGreaterThan(0);
  expect(progress.at(-1)).toMatch(/"rejected":\d+/);
}

describe('intake under a flood (no VM: empty images are rejected before boot)', () => {
  it('10,000 queued empty images: status summarises them; all end rejected in failed/, in bounded memory', { timeout: 900_000 }, async () => {
    const n = 10_000;
    const { root, base } = await setUp(n);
    const env = { ...process.env, JOBRUNNER_CONFIG: path.join(root, 'c.json') };
    // status on the full queue: a count, the size and the 10 oldest, not 10,000 lines.
    const human = await jobrunner(['status', ...spoolArgs(root)], { env, timeoutMs: 120_000 });
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(/^queued \(10000, 0 B, oldest since /m);
    expect(human.stdout).toMatch(/… and 9990 more/);
    expect(human.stdout.split('\n').length).toBeLessThan(30);
    const js = await jobrunner(['status', '--json', '--queued', '3', ...spoolArgs(root)], { env, timeoutMs: 120_000 });
    const st = JSON.parse(js.stdout) as { queued: Array<{ file: string; since: string }>; queuedCount: number };
    expect(st.queuedCount).toBe(n);
    expect(st.queued.length).toBe(3);
    expect([...st.queued].sort((a, b) => a.since.localeCompare(b.since))).toEqual(st.queued); // oldest first
    console.log(`jobrunner status on ${n} queued: ${human.ms} ms (human), ${js.ms} ms (--json)`);

    const r = await service(root, base, 880_000);
    checkRun(r, n);
    // Nothing lost, nothing doubled: every submitted name is published exactly once, as rejected, with its evidence.
    expect((await readdir(path.join(root, 'queue'))).filter((f) => !f.startsWith('.'))).toEqual([]);
    expect(await readdir(path.join(root, 'queue', '.running'))).toEqual([]);
    expect(await readdir(path.join(root, 'done'))).toEqual([]);
    const names = await rejections(root);
    expect(names.size).toBe(n);
    for (const i of [0, n >> 1, n - 1]) expect(names.has(`flood${i}`)).toBe(true);
    await rm(root, { recursive: true, force: true }); // 30,000 files; kept only when the test fails
  });

  it('50,000 queued empty images: stopped part-way, each is still queued or rejected with its status file; bounded memory', { timeout: 900_000 }, async () => {
    const n = 50_000;
    const { root, base } = await setUp(n);
    // Stop once a few thousand were rejected (or after 60 s): the whole queue has been listed and
    // settled by then, which is where memory grew with the queue before.
    const t0 = Date.now();
    const stop = async (log: () => string): Promise<void> => {
      while (Date.now() - t0 < 60_000 && (log().match(/"status":"rejected"/g)?.length ?? 0) < 3000) await new Promise((r) => setTimeout(r, 250));
    };
    const r = await service(root, base, 880_000, stop);
    checkRun(r, n);
    expect(await readdir(path.join(root, 'queue', '.running')), 'no claim left after the drain').toEqual([]);
    expect(await readdir(path.join(root, 'done'))).toEqual([]);
    const queued = new Set((await readdir(path.join(root, 'queue'))).filter((f) => !f.startsWith('.')).map((f) => f.replace(/\.img$/, '')));
    const rejected = await rejections(root);
    console.log(`50,000 flood stopped after ${(r.ms / 1000).toFixed(1)} s: ${rejected.size} rejected, ${queued.size} still queued`);
    expect(rejected.size).toBeGreaterThan(0);
    for (const name of rejected) expect(queued.has(name), `${name} both queued and rejected`).toBe(false);
    expect(rejected.size + queued.size, 'every file is still queued or rejected').toBe(n);
    await rm(root, { recursive: true, force: true }); // 50,000+ files; kept only when the test fails
  });
});
