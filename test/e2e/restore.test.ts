// Jobs restored from a saved VM template (issue 13), real qemu and the real base image: what must
// not be cloned is not (entropy, marker nonce, clock), two restores run at once, a corrupt template
// is never used (cold boot, one warning, the job still succeeds), a changed base image or VM shape
// gets a new template, a hostile job cannot change the template, and the status JSON says how the
// VM started.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, copyFile, link, mkdir, mkdtemp, open, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSettings, type Settings } from '../../src/config.js';
import { loadBaseImage } from '../../src/image/base.js';
import { digestFile } from '../../src/image/meta.js';
import { handOver, resolveRunAs } from '../../src/run-as.js';
import type { JobStatus } from '../../src/spool/record.js';
import { AccelState, runJobVm, type VmRunOutcome } from '../../src/job/vm-run.js';
import { ensureTemplate, templatesDir } from '../../src/vm/template.js';
import { BASE_DIR, HAVE_BASE, REPO, makeJob, scratch } from '../helpers.js';

interface Run { out: VmRunOutcome; console: string; arrivals: Map<string, number>; warnings: string[] }

let work: string;
let cfg: string;

function settings(extra: string[] = [], baseDir = BASE_DIR): Settings {
  return loadSettings(['--base-image-dir', baseDir, '--timeout', '4m', '--start', 'restore', ...extra], { JOBRUNNER_CONFIG: cfg }).settings;
}

/** One job through the same code path as `jobrunner run`, with console lines timestamped on arrival. */
async function runOne(img: string, s: Settings): Promise<Run> {
  const base = await loadBaseImage(s.baseImageDir, s.baseImage);
  const runAs = await resolveRunAs(s.runAs);
  // Beside the scratch dirs jobrunner run makes: the unprivileged qemu must reach it (work/ is 0700).
  const tmpDir = await mkdtemp(path.join(os.tmpdir(), 'jr-restore-vm-'));
  await handOver(runAs, [img, tmpDir]);
  let text = '';
  const arrivals = new Map<string, number>();
  const warnings: string[] = [];
  try {
    const out = await runJobVm({
      image: img, base, settings: s, logPath: null, tmpDir, runAs,
      onConsole: (chunk) => {
        const now = Date.now();
        const before = text.length;
        text += chunk.toString('latin1');
        // Every line completed by this chunk arrived now.
        for (const line of text.slice(Math.max(0, text.lastIndexOf('\n', before - 1) + 1)).split('\n').slice(0, -1)) arrivals.set(line.trim(), now);
      },
      onWarning: (m) => warnings.push(m),
    }, new AccelState(s.accel));
    return { out, console: text, arrivals, warnings };
  } finally {
    await rm(tmpDir, { recursive: true, force: true });
  }
}

// The clock first: the goal is the guest's clock at job start.
const PROBE = [
  'echo "@@clock:$(date +%s.%N)@@"',
  'echo "@@rand:$(head -c 32 /dev/urandom | od -An -tx1 | tr -d \' \\n\')@@"',
  'echo "@@cmdline:$(cat /proc/cmdline)@@"',
].join('\n');

const field = (text: string, name: string): string => new RegExp(`@@${name}:([^@]*)@@`).exec(text)?.[1] ?? '';

/** A base image dir whose 'default' shares the real image's files (hard links) but has its own templates/. */
async function privateBase(name: string): Promise<string> {
  const dir = await mkdtemp(path.join(BASE_DIR, `.test-${name}-`));
  await mkdir(path.join(dir, 'default'));
  for (const f of ['root.img', 'vmlinuz', 'initrd.img']) await link(path.join(BASE_DIR, 'default', f), path.join(dir, 'default', f));
  await copyFile(path.join(BASE_DIR, 'default', 'image.json'), path.join(dir, 'default', 'image.json'));
  return dir;
}

async function rmTemplates(dir: string): Promise<void> {
  // Templates are read-only (dirs 0555): make them removable first.
  for (const t of await readdir(dir).catch(() => [] as string[])) await chmod(path.join(dir, t), 0o755).catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
}

describe.skipIf(!HAVE_BASE)('restore from a VM template (real qemu)', () => {
  const privates: string[] = [];
  beforeAll(async () => {
    work = await scratch('restore');
    cfg = path.join(work, 'config.json');
    await writeFile(cfg, '{}');
    const s = settings();
    // Built once here (or already there): the tests below measure restores, not the build.
    const base = await loadBaseImage(s.baseImageDir, s.baseImage);
    await ensureTemplate({ base, qemu: s.qemu, accel: 'tcg', memoryMiB: s.memory / 2 ** 20, cpus: s.cpus, network: s.network,
      sandbox: s.sandbox, bootTimeoutMs: s.bootTimeout, killGraceMs: s.killGrace, runAs: await resolveRunAs(s.runAs) });
  });
  afterAll(async () => {
    for (const p of privates) { await rmTemplates(path.join(p, 'default', 'templates')); await rm(p, { recursive: true, force: true }); }
  });

  it('two restores at once both succeed, with different entropy and nonces and the host\'s clock', async () => {
    const [a, b] = [await makeJob(work, 'probe-a', PROBE), await makeJob(work, 'probe-b', PROBE)];
    const s = settings();
    const [ra, rb] = await Promise.all([runOne(a!, s), runOne(b!, s)]);
    for (const r of [ra, rb]) {
      expect(r.out.reason).toBe('the job succeeded');
      expect(r.out.start?.used).toBe('restore');
      expect(r.warnings).toEqual([]);
      // The guest's wall clock, printed by the job, against the host's clock when that line arrived.
      const line = [...r.arrivals.keys()].find((l) => l.startsWith('@@clock:'))!;
      const skew = r.arrivals.get(line)! / 1000 - Number(field(line, 'clock'));
      console.log(`guest clock at job start vs host arrival: ${skew.toFixed(3)} s (includes the console's latency)`);
      expect(Math.abs(skew), `guest clock off by ${skew.toFixed(3)} s`).toBeLessThan(1);
    }
    expect(ra.out.start?.template).toBe(rb.out.start?.template);
    expect(field(ra.console, 'rand')).toMatch(/^[0-9a-f]{64}$/);
    expect(field(ra.console, 'rand')).not.toBe(field(rb.console, 'rand'));
    const nonce = (t: string): string => /@@construir:([0-9a-f]+):start@@/.exec(t)?.[1] ?? '';
    expect(nonce(ra.console)).not.toBe('');
    expect(nonce(ra.console)).not.toBe(nonce(rb.console));
    // The cloned cmdline carries no nonce: it came over the console after the restore.
    expect(field(ra.console, 'cmdline')).toContain('construir.start=template');
    expect(field(ra.console, 'cmdline')).not.toContain(nonce(ra.console));
  });

  it('a hostile job that writes everywhere cannot change the template', async () => {
    const s = settings();
    const before = (await runOne(await makeJob(work, 'plain', 'echo plain'), s)).out.start!;
    expect(before.used).toBe('restore');
    const dir = path.join(templatesDir(await loadBaseImage(s.baseImageDir, s.baseImage)), before.template!);
    const meta = JSON.parse(await readFile(path.join(dir, 'template.json'), 'utf8')) as { files: Record<string, { sha256: string }> };
    const hostile = await makeJob(work, 'hostile', [
      'for d in /dev/vda /dev/sda /dev/sdb /dev/vdc; do [ -b $d ] && dd if=/dev/urandom of=$d bs=1M count=32 seek=1 conv=fsync 2>&1 | tail -n1; done',
      'for f in /usr/sbin/construir /etc/passwd /bin/sh; do echo pwned > $f; done',
      'find / -xdev -type f -size -64k 2>/dev/null | head -n 2000 | while read f; do echo pwned >> "$f"; done',
      'echo 3 > /proc/sys/vm/drop_caches; sync; echo wrote everywhere',
    ].join('\n'));
    const h = await runOne(hostile, s);
    expect(h.out.start?.used).toBe('restore');
    expect(h.console).toContain('wrote everywhere');
    for (const f of ['state', 'root.qcow2', 'template.json']) expect((await stat(path.join(dir, f))).mode & 0o222).toBe(0);
    for (const f of ['state', 'root.qcow2']) expect((await digestFile(path.join(dir, f))).sha256).toBe(meta.files[f]!.sha256);
    const after = await runOne(await makeJob(work, 'after', 'cat /etc/passwd | head -n1; echo still fine'), s);
    expect(after.out.reason).toBe('the job succeeded');
    expect(after.out.start?.used).toBe('restore');
    expect(after.console).toMatch(/^root:x:0:0/m);
  });

  it('a corrupt state file is never used: cold boot, one warning, the job succeeds; next time it is rebuilt', async () => {
    const baseDir = await privateBase('corrupt');
    privates.push(baseDir);
    const s = settings([], baseDir);
    const real = await runOne(await makeJob(work, 'seed', 'echo seed'), settings());
    const key = real.out.start!.template!;
    // The same files (hard links) give the same key: start from a copy of the real template.
    const tdir = path.join(baseDir, 'default', 'templates', key);
    await mkdir(tdir, { recursive: true });
    for (const f of ['state', 'root.qcow2', 'template.json']) await copyFile(path.join(BASE_DIR, 'default', 'templates', key, f), path.join(tdir, f));
    const fh = await open(path.join(tdir, 'state'), 'r+');
    await fh.write(Buffer.from('corrupt!'), 0, 8, 50 << 20);
    await fh.close();
    for (const f of ['state', 'root.qcow2', 'template.json']) await chmod(path.join(tdir, f), 0o444);

    const r = await runOne(await makeJob(work, 'victim', 'echo survived'), s);
    expect(r.out.reason).toBe('the job succeeded');
    expect(r.console).toContain('survived');
    expect(r.out.start).toMatchObject({ requested: 'restore', used: 'cold', template: key });
    expect(r.out.start?.fallback).toMatch(/state does not match its checksum/);
    expect(r.warnings).toHaveLength(1);
    expect(r.warnings[0]).toMatch(/checksum.*booting cold instead/);
    expect(await stat(tdir).then(() => true, () => false)).toBe(false); // thrown away

    const again = await runOne(await makeJob(work, 'rebuilt', 'echo rebuilt'), s);
    expect(again.out.start).toMatchObject({ used: 'restore', template: key, built: true });
    expect(again.out.reason).toBe('the job succeeded');
  });

  it('a changed base image or VM memory gets a new template, never the stale one', async () => {
    const baseDir = await privateBase('stale');
    privates.push(baseDir);
    const first = await runOne(await makeJob(work, 'one', 'echo one'), settings([], baseDir));
    expect(first.out.start).toMatchObject({ used: 'restore', built: true });
    // The base image changes (as after rawmount: image.json records the new root.img digest).
    const metaFile = path.join(baseDir, 'default', 'image.json');
    const meta = JSON.parse(await readFile(metaFile, 'utf8')) as { files: Record<string, { sha256: string }> };
    meta.files['root.img']!.sha256 = 'f'.repeat(64);
    await writeFile(metaFile, JSON.stringify(meta));
    const second = await runOne(await makeJob(work, 'two', 'echo two'), settings([], baseDir));
    expect(second.out.start).toMatchObject({ used: 'restore', built: true });
    expect(second.out.start!.template).not.toBe(first.out.start!.template);
    // Another memory size is another VM shape.
    const third = await runOne(await makeJob(work, 'three', 'free -m | head -n2'), settings(['--memory', '768M'], baseDir));
    expect(third.out.start).toMatchObject({ used: 'restore', built: true });
    expect(third.out.start!.template).not.toBe(second.out.start!.template);
    expect(third.out.reason).toBe('the job succeeded');
    expect((await readdir(path.join(baseDir, 'default', 'templates'))).filter((f) => !f.startsWith('.')).sort())
      .toEqual([second.out.start!.template, third.out.start!.template].sort());
  });

  it('the service never waits for a build: first job cold while it builds, then restores; --start cold boots cold', async () => {
    const baseDir = await privateBase('svc');
    privates.push(baseDir);
    const root = await scratch('restore-svc');
    const dirs = { queue: path.join(root, 'queue'), done: path.join(root, 'done'), failed: path.join(root, 'failed') };
    for (const d of Object.values(dirs)) await mkdir(d, { recursive: true });
    const submit = async (name: string): Promise<void> => {
      await copyFile(await makeJob(work, name, `echo ${name}`), path.join(dirs.queue, `.${name}.part`));
      await rename(path.join(dirs.queue, `.${name}.part`), path.join(dirs.queue, `${name}.img`));
    };
    const done = async (name: string): Promise<JobStatus> => {
      for (let i = 0; i < 1200; i++) {
        const st = await readFile(path.join(dirs.done, `${name}.json`), 'utf8').catch(() => null);
        if (st) return JSON.parse(st) as JobStatus;
        await new Promise((r) => setTimeout(r, 250));
      }
      throw new Error(`${name} never finished`);
    };
    const svc = (extra: string[]): ChildProcess => spawn(path.join(REPO, 'jobrunner'),
      ['--queue', dirs.queue, '--done', dirs.done, '--failed', dirs.failed, '--settle', '300ms', '--base-image-dir', baseDir, ...extra],
      { env: { ...process.env, JOBRUNNER_CONFIG: cfg }, stdio: 'ignore' });
    const stop = (c: ChildProcess): Promise<unknown> => new Promise((r) => { c.on('exit', r); c.kill('SIGTERM'); });

    const c = svc(['--start', 'restore']);
    try {
      await submit('first');
      const first = await done('first');
      expect(first.status).toBe('succeeded');
      expect(first.start).toMatchObject({ requested: 'restore', used: 'cold', timings: null });
      expect(first.start?.fallback).toMatch(/is being built; this job boots cold meanwhile/);
      const tdir = path.join(baseDir, 'default', 'templates');
      for (let i = 0; i < 1200 && !(await readdir(tdir).catch(() => [] as string[])).some((f) => !f.startsWith('.')); i++) await new Promise((r) => setTimeout(r, 250));
      await submit('second');
      const second = await done('second');
      expect(second.status).toBe('succeeded');
      expect(second.start).toMatchObject({ requested: 'restore', used: 'restore', fallback: null, built: false });
      for (const k of ['loadMs', 'diskMs', 'jobStartMs'] as const) expect(second.start!.timings![k]).toBeGreaterThan(0);
      expect(second.start!.timings!.loadMs!).toBeLessThanOrEqual(second.start!.timings!.diskMs!);
    } finally {
      await stop(c);
    }
    const cold = svc(['--start', 'cold']);
    try {
      await submit('third');
      const third = await done('third');
      expect(third.status).toBe('succeeded');
      expect(third.start).toMatchObject({ requested: 'cold', used: 'cold', template: null, timings: null, fallback: null });
    } finally {
      await stop(cold);
    }
    await rm(root, { recursive: true, force: true });
  });
});
