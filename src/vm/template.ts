// Templates: a guest booted once to construir's "ready" point and saved (vm/template-build.ts), so
// jobs restore it instead of booting (vm/restore.ts). One per base image and VM shape, stored
// read-only in base-image/NAME/templates/KEY/ {state, root.qcow2, template.json}, where KEY hashes
// everything that shaped it: the base image's files, qemu (binary and version), the shape (machine,
// memory, cpus, accel, network, sandbox) and the full argv (the device set). A template whose
// template.json, sizes or checksums disagree is never used; it is removed and built again.
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, realpath, rename, rm, stat, writeFile, chmod } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { JrError, isJrError, messageOf } from '../errors.js';
import type { BaseImage } from '../image/base.js';
import { digestFile, type FileDigest } from '../image/meta.js';
import { isAlive } from '../procfs.js';
import { run } from '../proc.js';
import { pinnedMachine, templateBuildArgs, type TemplateShape } from './template-args.js';
import { buildTemplateFiles, type BuildTimings } from './template-build.js';

const FORMAT = 1;
export const TEMPLATE_FILES = ['state', 'root.qcow2'] as const;

/** What a template's key is the hash of (recorded in its template.json). */
export interface TemplateInputs {
  format: number;
  base: { name: string; files: Record<string, { bytes: number; sha256: string; mtimeMs: number }> };
  qemu: { path: string; version: string; bytes: number; mtimeMs: number };
  shape: TemplateShape;
  argv: string[];
}

export interface TemplateMeta {
  key: string;
  inputs: TemplateInputs;
  files: Record<string, FileDigest>;
  builtAt: string;
  timings: BuildTimings;
}

export interface Template { dir: string; state: string; overlay: string; meta: TemplateMeta }

/** What a template is built from: the base image, qemu, the VM's shape, and how to run qemu. */
export interface TemplateRequest {
  base: BaseImage;
  qemu: string;
  accel: TemplateShape['accel'];
  memoryMiB: number;
  cpus: number;
  network: 'off' | 'user';
  sandbox: boolean;
  bootTimeoutMs: number;
  killGraceMs: number;
  runAs?: { uid: number; gid: number };
  /** Where a build's scratch goes (a job's own scratch dir, swept with it); default the system temp dir. */
  scratchDir?: string;
}

const versions = new Map<string, Promise<string>>();
/** `qemu --version`'s number (e.g. 7.2.22), asked once per binary per process. */
function qemuVersion(qemu: string): Promise<string> {
  let v = versions.get(qemu);
  if (!v) {
    v = run(qemu, ['--version'], { errorCode: 'JR_E_TEMPLATE', timeoutMs: 15_000 }).then((r) => {
      const m = /version (\d+\.\d+(?:\.\d+)?)/.exec(r.stdout);
      if (!m) throw new JrError('JR_E_TEMPLATE', `cannot read qemu's version from: ${r.stdout.slice(0, 200)}`);
      return m[1]!;
    });
    versions.set(qemu, v);
    v.catch(() => versions.delete(qemu));
  }
  return v;
}

async function whichQemu(qemu: string): Promise<string> {
  if (qemu.includes('/')) return realpath(qemu);
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    const p = path.join(dir || '.', qemu);
    if (await stat(p).then((s) => s.isFile(), () => false)) return realpath(p);
  }
  throw new JrError('JR_E_TEMPLATE', `qemu binary '${qemu}' not found on PATH`);
}

/** The inputs and key of the template `req` needs (pure but for stat calls and `qemu --version`). */
export async function templateInputs(req: TemplateRequest): Promise<{ inputs: TemplateInputs; key: string }> {
  const qemuPath = await whichQemu(req.qemu);
  const version = await qemuVersion(qemuPath);
  const qst = await stat(qemuPath);
  const shape: TemplateShape = { accel: req.accel, machine: pinnedMachine(version), memoryMiB: req.memoryMiB, cpus: req.cpus, network: req.network, sandbox: req.sandbox };
  const files: TemplateInputs['base']['files'] = {};
  for (const [f, p] of [['root.img', req.base.root], ['vmlinuz', req.base.kernel], ['initrd.img', req.base.initrd]] as const) {
    const st = await stat(p);
    // image.json's digest, plus size and mtime: an edit that forgot to refresh image.json still counts.
    files[f] = { bytes: st.size, sha256: req.base.meta.files[f]?.sha256 ?? '', mtimeMs: Math.floor(st.mtimeMs) };
  }
  const inputs: TemplateInputs = {
    format: FORMAT,
    base: { name: req.base.name, files },
    qemu: { path: qemuPath, version, bytes: qst.size, mtimeMs: Math.floor(qst.mtimeMs) },
    shape,
    argv: templateBuildArgs(shape, { kernel: 'KERNEL', initrd: 'INITRD', qmpSocket: 'QMP' }),
  };
  return { inputs, key: templateKey(inputs) };
}

/** The key of a template: sha256 of its inputs, 32 hex digits. */
export function templateKey(inputs: TemplateInputs): string {
  return createHash('sha256').update(JSON.stringify(inputs)).digest('hex').slice(0, 32);
}

/** Where base image `base`'s templates live. */
export function templatesDir(base: BaseImage): string {
  return path.join(base.dir, 'templates');
}

// Checksums already verified in this process, by file identity: a changed file (even by chmod) has a
// new ctime and is hashed again.
const verified = new Map<string, string>();
const identity = (st: { dev: number; ino: number; size: number; mtimeMs: number; ctimeMs: number }): string =>
  `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;

/**
 * Open-time check of the template in `dir` for `key`: template.json matches, the files exist, are
 * read-only and have the recorded sizes. Returns null when it cannot be used. `checksums` then
 * verifies the content (a restore runs it while qemu loads and waits for it before the guest runs).
 */
export async function readTemplate(dir: string, key: string): Promise<(Template & { checksums: () => Promise<void> }) | null> {
  let meta: TemplateMeta;
  try { meta = JSON.parse(await readFile(path.join(dir, 'template.json'), 'utf8')) as TemplateMeta; } catch { return null; }
  if (meta.key !== key || templateKey(meta.inputs) !== key) return null;
  const stats = new Map<string, Awaited<ReturnType<typeof stat>>>();
  for (const f of TEMPLATE_FILES) {
    const st = await stat(path.join(dir, f)).catch(() => null);
    if (!st?.isFile() || st.size !== meta.files[f]?.bytes || (st.mode & 0o222) !== 0) return null;
    stats.set(f, st);
  }
  const checksums = async (): Promise<void> => {
    await Promise.all(TEMPLATE_FILES.map(async (f) => {
      const p = path.join(dir, f);
      const id = identity(stats.get(f)! as Parameters<typeof identity>[0]);
      if (verified.get(p) === id) return;
      const d = await digestFile(p);
      if (d.sha256 !== meta.files[f]!.sha256) {
        throw new JrError('JR_E_TEMPLATE', `template ${path.basename(dir)}: ${f} does not match its checksum (corrupt or modified)`);
      }
      verified.set(p, id);
    }));
  };
  return { dir, state: path.join(dir, 'state'), overlay: path.join(dir, 'root.qcow2'), meta, checksums };
}

/** Throw a template away (it is read-only: move it aside first so no reader sees half of it). */
export async function discardTemplate(dir: string): Promise<void> {
  const aside = path.join(path.dirname(dir), `.discard-${path.basename(dir)}-${process.pid}-${Date.now()}`);
  await rename(dir, aside).catch(() => undefined);
  await chmod(aside, 0o755).catch(() => undefined);
  await rm(aside, { recursive: true, force: true });
}

const building = new Map<string, Promise<Template>>();
// Builds that failed in this process: not retried (each attempt costs a full boot).
const failedBuilds = new Map<string, string>();

/**
 * The usable template for `req`, building it first when there is none (or it is stale or corrupt).
 * Several jobs and processes may ask at once: one builds (a lock directory per key, taken over when
 * its holder died), the rest wait for it. Throws JR_E_TEMPLATE when it cannot be built.
 */
export async function ensureTemplate(req: TemplateRequest, log?: (msg: string) => void): Promise<UsableTemplate> {
  return getTemplate(req, log, true) as Promise<UsableTemplate>;
}

/** The usable template for `req`, or `{ pending: KEY }` while it is built in the background (started here if needed). */
export function templateOrBuild(req: TemplateRequest, log?: (msg: string) => void): Promise<UsableTemplate | { pending: string }> {
  return getTemplate(req, log, false);
}

export type UsableTemplate = Template & { checksums: () => Promise<void>; built: boolean };

async function getTemplate(req: TemplateRequest, log: ((msg: string) => void) | undefined, wait: boolean): Promise<UsableTemplate | { pending: string }> {
  const { inputs, key } = await templateInputs(req);
  const dir = path.join(templatesDir(req.base), key);
  const ready = await readTemplate(dir, key);
  if (ready) return { ...ready, built: false };
  const failed = failedBuilds.get(key);
  if (failed) throw new JrError('JR_E_TEMPLATE', `${failed} (earlier in this process; not retried)`);
  let p = building.get(key);
  if (!p) {
    // A build in the background outlives the job that started it: its scratch is not the job's.
    const r = wait ? req : { ...req, scratchDir: undefined };
    p = buildLocked(r, inputs, key, dir, log).catch((e: unknown) => { failedBuilds.set(key, messageOf(e)); throw e; }).finally(() => building.delete(key));
    p.catch(() => undefined);
    building.set(key, p);
  }
  if (!wait) return { pending: key };
  await p;
  const t = await readTemplate(dir, key);
  if (!t) throw new JrError('JR_E_TEMPLATE', `template ${key} vanished right after it was built`);
  return { ...t, built: true };
}

async function buildLocked(req: TemplateRequest, inputs: TemplateInputs, key: string, dir: string, log?: (msg: string) => void): Promise<Template> {
  const root = path.dirname(dir);
  await mkdir(root, { recursive: true }).catch((e: unknown) => {
    throw new JrError('JR_E_TEMPLATE', `cannot create ${root} for templates: ${messageOf(e)}`, { cause: e });
  });
  const lock = path.join(root, `.lock-${key}`);
  const deadline = Date.now() + req.bootTimeoutMs * 2 + 120_000;
  for (;;) {
    try {
      await mkdir(lock);
      await writeFile(path.join(lock, 'pid'), String(process.pid));
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new JrError('JR_E_TEMPLATE', `cannot lock ${lock}: ${messageOf(e)}`, { cause: e });
    }
    const holder = Number(await readFile(path.join(lock, 'pid'), 'utf8').catch(() => 'NaN'));
    if (Number.isInteger(holder) && holder > 0 && !(await isAlive(holder))) { await rm(lock, { recursive: true, force: true }); continue; }
    const t = await readTemplate(dir, key);
    if (t) return t; // another process built it
    if (Date.now() > deadline) throw new JrError('JR_E_TEMPLATE', `template ${key} is being built by pid ${holder} for too long (lock ${lock})`);
    await new Promise((r) => setTimeout(r, 250));
  }
  try {
    const again = await readTemplate(dir, key);
    if (again) return again;
    await discardTemplate(dir); // stale or corrupt leftovers
    // Half-built leftovers of this key (a builder killed mid-way): we hold the lock, none is live.
    for (const f of await readdir(root)) {
      if (f.startsWith(`.build-${key}-`)) { await chmod(path.join(root, f), 0o755).catch(() => undefined); await rm(path.join(root, f), { recursive: true, force: true }); }
    }
    log?.(`building VM template ${key} for base image '${req.base.name}' (one cold boot, then saved; later jobs restore it)`);
    const work = await mkdtemp(path.join(root, `.build-${key}-`));
    const scratch = await mkdtemp(path.join(req.scratchDir ?? os.tmpdir(), 'tpl-'));
    try {
      const timings = await buildTemplateFiles({ ...req, inputs, outDir: work, tmpDir: scratch });
      const files: Record<string, FileDigest> = {};
      for (const f of TEMPLATE_FILES) files[f] = await digestFile(path.join(work, f));
      const meta: TemplateMeta = { key, inputs, files, builtAt: new Date().toISOString(), timings };
      await writeFile(path.join(work, 'template.json'), JSON.stringify(meta, null, 2) + '\n');
      for (const f of [...TEMPLATE_FILES, 'template.json']) await chmod(path.join(work, f), 0o444);
      await chmod(work, 0o555);
      await rename(work, dir);
      for (const f of TEMPLATE_FILES) verified.set(path.join(dir, f), identity(await stat(path.join(dir, f))));
    } catch (e) {
      await chmod(work, 0o755).catch(() => undefined);
      await rm(work, { recursive: true, force: true });
      throw isTemplateError(e) ? e : new JrError('JR_E_TEMPLATE', `building the VM template failed: ${messageOf(e)}`, { cause: e });
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
    const t = await readTemplate(dir, key);
    if (!t) throw new JrError('JR_E_TEMPLATE', `template ${key} is unreadable right after it was built`);
    await dropStaleSiblings(root, inputs);
    return t;
  } finally {
    await rm(lock, { recursive: true, force: true });
  }
}

/** Templates of an older version of this base image (its files changed) can never be used again: free their space. */
async function dropStaleSiblings(root: string, current: TemplateInputs): Promise<void> {
  const want = JSON.stringify(current.base);
  for (const f of await readdir(root).catch(() => [] as string[])) {
    if (f.startsWith('.')) continue;
    const m = await readFile(path.join(root, f, 'template.json'), 'utf8').then((t) => JSON.parse(t) as TemplateMeta, () => null);
    if (m && JSON.stringify(m.inputs?.base) !== want) await discardTemplate(path.join(root, f)).catch(() => undefined);
  }
}

const isTemplateError = (e: unknown): boolean => isJrError(e, 'JR_E_TEMPLATE');
