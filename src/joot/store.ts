// Environments on disk. JOOT_HOME/envs/NAME/ holds env.json (the record), disk.qcow2 (the
// copy-on-write overlay), mount.json (what is mounted, see session.ts) and root/ (mount point).
// Locks live outside the env directories (JOOT_HOME/locks/) so rename never moves a held lock.
import { mkdir, readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { JrError } from '../errors.js';
import { saveState } from '../image/mount.js';
import type { ImageFormat } from '../image/probe.js';
import { withLock } from './lock.js';

export interface Automount { dir: string; readOnly: boolean }

export interface EnvRecord {
  version: 1;
  name: string;
  /** Image name as given to create, and the file backing the overlay. */
  image: string;
  imagePath: string;
  imageFormat: ImageFormat;
  /** sha256 of the backing file from its image.json at creation (null if it has none). */
  imageSha256: string | null;
  /** Filesystem type of the backing image (whole-filesystem images), to skip probing. */
  fstype: string | null;
  creator: string;
  created: string;
  automounts: Automount[];
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Throw unless `name` is a safe environment name (it becomes a directory name). */
export function checkName(name: string, what = 'NAME'): void {
  if (!NAME_RE.test(name)) {
    throw new JrError('JR_E_USAGE', `Expected \`${what}\` to be 1-64 of [A-Za-z0-9._-] not starting with . or -, got ${JSON.stringify(name)}`);
  }
}

/** Paths of one environment. */
export interface EnvPaths { dir: string; record: string; disk: string; state: string; root: string; exportFile: string; lock: string }

/** Paths for environment `name` under JOOT_HOME `home`. */
export function envPaths(home: string, name: string): EnvPaths {
  checkName(name);
  const dir = path.join(home, 'envs', name);
  return {
    dir, record: path.join(dir, 'env.json'), disk: path.join(dir, 'disk.qcow2'), state: path.join(dir, 'mount.json'),
    root: path.join(dir, 'root'), exportFile: path.join(dir, 'disk.raw'), lock: path.join(home, 'locks', `${name}.lock`),
  };
}

/** Hold the lock of environment `name` while running fn. */
export async function withEnvLock<T>(home: string, name: string, fn: () => Promise<T>): Promise<T> {
  await mkdir(path.join(home, 'locks'), { recursive: true });
  return withLock(envPaths(home, name).lock, fn);
}

/** Hold JOOT_HOME's structure lock (create, rename, delete) while running fn. */
export async function withHomeLock<T>(home: string, fn: () => Promise<T>): Promise<T> {
  await mkdir(path.join(home, 'locks'), { recursive: true });
  return withLock(path.join(home, 'locks', '.home.lock'), fn);
}

/** Read an environment's record; JR_E_JOOT if there is no such environment. */
export async function readRecord(home: string, name: string): Promise<EnvRecord> {
  const p = envPaths(home, name);
  try {
    return JSON.parse(await readFile(p.record, 'utf8')) as EnvRecord;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new JrError('JR_E_JOOT', `no joot named "${name}" (see: joot list)`);
    throw new JrError('JR_E_JOOT', `cannot read ${p.record}: ${(e as Error).message}`, { cause: e });
  }
}

/** Write an environment's record atomically. */
export async function writeRecord(home: string, rec: EnvRecord): Promise<void> {
  await saveState(envPaths(home, rec.name).record, rec);
}

/** All environments' records, by name (directories without a readable record are skipped). */
export async function listRecords(home: string): Promise<EnvRecord[]> {
  const names = await readdir(path.join(home, 'envs')).catch(() => [] as string[]);
  const out: EnvRecord[] = [];
  for (const n of names.sort()) {
    if (!NAME_RE.test(n)) continue;
    try { out.push(await readRecord(home, n)); } catch { /* half-created or being deleted */ }
  }
  return out;
}
