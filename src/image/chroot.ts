// Preparing a mounted root for chroot: resolve paths the way the chroot will see them, mount the
// system filesystems, bind host directories, copy host files in.
//
// RULE: every path inside the root is resolved with resolveInside, never handed to the host kernel
// as ROOT + p. Whoever is root inside can plant /etc/resolv.conf -> /etc/shadow or /home/u -> /etc;
// followed on the host, that would overwrite host files or bind over host directories.
import { lstat, mkdir, readlink, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { run } from '../proc.js';
import { JrError } from '../errors.js';
import { mounts } from './mountinfo.js';

/** Host path of `p` (absolute, as seen inside `root`), following symlinks relative to root like the
 *  chroot would. Never leaves root; missing trailing components are returned as they are. */
export async function resolveInside(root: string, p: string): Promise<string> {
  const rootAbs = path.resolve(root);
  const done: string[] = [];
  let todo = p.split('/').filter((c) => c !== '' && c !== '.');
  for (let links = 0; todo.length > 0;) {
    const c = todo.shift()!;
    if (c === '..') { done.pop(); continue; }
    const host = path.join(rootAbs, ...done, c);
    let st;
    try { st = await lstat(host); } catch { return path.join(rootAbs, ...done, c, ...todo); }
    if (!st.isSymbolicLink()) { done.push(c); continue; }
    if (++links > 40) throw new JrError('JR_E_JOOT', `too many symlinks resolving ${p} inside ${rootAbs}`);
    const target = await readlink(host);
    if (target.startsWith('/')) done.length = 0;
    todo = [...target.split('/').filter((x) => x !== '' && x !== '.'), ...todo];
  }
  return path.join(rootAbs, ...done);
}

/** Like resolveInside, but the last component itself is not followed (for files we replace). */
export async function resolveParentInside(root: string, p: string): Promise<string> {
  return path.join(await resolveInside(root, path.posix.dirname(p)), path.posix.basename(p));
}

/** Create directory `p` inside root (resolved safely); returns its host path. */
export async function mkdirInside(root: string, p: string): Promise<string> {
  const host = await resolveInside(root, p);
  await mkdir(host, { recursive: true });
  const again = await resolveInside(root, p);
  if (again !== host) throw new JrError('JR_E_JOOT', `${p} changed while it was being created inside ${root}`);
  return host;
}

/** One mount to make inside a root, as an fstab entry (target is the path inside). */
export interface MountSpec { target: string; source: string; fstype: string; options: string }

// "private": a bind of a shared host mount (systemd makes / shared) would otherwise propagate the
// mounts we stack on it (dev/pts…) back onto the host's own /dev.
/** Bind host directory `src` at `target` inside (read-only if asked). */
export const bindSpec = (src: string, target: string, readOnly = false): MountSpec =>
  ({ target, source: path.resolve(src), fstype: 'none', options: `bind,private${readOnly ? ',ro' : ''}` });

/** The automounts every environment gets, in mount order. */
export const SYSTEM_MOUNTS: MountSpec[] = [
  { target: '/proc', source: 'proc', fstype: 'proc', options: 'nosuid,nodev,noexec' },
  { target: '/sys', source: 'sysfs', fstype: 'sysfs', options: 'nosuid,nodev,noexec,ro' },
  bindSpec('/dev', '/dev'),
  bindSpec('/dev/pts', '/dev/pts'),
  { target: '/dev/shm', source: 'shm', fstype: 'tmpfs', options: 'nosuid,nodev,mode=1777' },
];

// fstab fields are separated by blanks: escape them (and the escape character) the way mount reads them.
const fstabField = (x: string) => x.replace(/[\\ \t\n]/g, (c) => '\\' + c.charCodeAt(0).toString(8).padStart(3, '0'));

/** An fstab for specs already resolved to host targets (pure). */
export function fstab(entries: Array<{ spec: MountSpec; hostTarget: string }>): string {
  return entries.map((e) => [e.spec.source, e.hostTarget, e.spec.fstype, e.spec.options, '0', '0'].map(fstabField).join(' ') + '\n').join('');
}

/** Mount all entries, in order, with ONE mount(8) process (`mount -a -T fstab`): each process costs
 *  more than the mount itself. Returns the host targets that did not get mounted, and why. */
export async function mountAll(entries: Array<{ spec: MountSpec; hostTarget: string }>, scratchDir: string): Promise<{ failed: string[]; why: string }> {
  if (entries.length === 0) return { failed: [], why: '' };
  const file = path.join(scratchDir, `.fstab-${process.pid}`);
  await writeFile(file, fstab(entries));
  let why = '';
  try {
    why = (await run('mount', ['--all', '--fstab', file], { reject: false })).stderr.trim();
  } finally {
    await rm(file, { force: true });
  }
  const now = new Set((await mounts()).map((m) => m.mountpoint));
  return { failed: entries.map((e) => e.hostTarget).filter((t) => !now.has(t)), why };
}

/** Unmount host mount points, in the order given, with one umount(8) process. Returns the ones
 *  still mounted afterwards (busy), with umount's complaint. */
export async function unmountAll(targets: string[]): Promise<{ left: string[]; why: string }> {
  const mounted = new Set((await mounts()).map((m) => m.mountpoint));
  const todo = targets.filter((t) => mounted.has(t));
  if (todo.length === 0) return { left: [], why: '' };
  const r = await run('umount', ['--', ...todo], { reject: false });
  const now = new Set((await mounts()).map((m) => m.mountpoint));
  return { left: todo.filter((t) => now.has(t)), why: r.stderr.trim() };
}

/** Copy host file `p` to the same path inside root, replacing (not following) whatever is there. */
export async function copyHostFile(root: string, p: string): Promise<void> {
  let data: Buffer;
  try { data = await readFile(p); } catch { return; } // the host has no such file: nothing to manage
  const dest = await resolveParentInside(root, p);
  await mkdir(path.dirname(dest), { recursive: true });
  const st = await lstat(dest).catch(() => null);
  if (st?.isDirectory()) throw new JrError('JR_E_JOOT', `cannot copy ${p} into the environment: it is a directory there`);
  // Temp file + rename: rename replaces a planted symlink itself instead of writing through it.
  const tmp = path.join(path.dirname(dest), `.joot-${process.pid}-${path.basename(dest)}`);
  await writeFile(tmp, data, { mode: 0o644, flag: 'wx' }).catch(async (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EEXIST') throw e;
    await rm(tmp, { force: true });
    await writeFile(tmp, data, { mode: 0o644, flag: 'wx' });
  });
  await rename(tmp, dest);
}
