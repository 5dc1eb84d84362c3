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
import { isMounted } from './mountinfo.js';

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

export interface SystemMount {
  /** Path inside the root. */
  target: string;
  args: (hostTarget: string) => string[];
}

// --make-private: a bind of a shared host mount (systemd makes / shared) would otherwise propagate
// the mounts we stack on it (dev/pts…) back onto the host's own /dev.
/** mount(8) arguments binding host `src` at host path `t` (read-only if asked). */
export const bindArgs = (src: string, readOnly = false) => (t: string): string[] =>
  ['--bind', '--make-private', ...(readOnly ? ['-o', 'ro'] : []), '--', path.resolve(src), t];

/** The automounts every environment gets, in mount order. */
export const SYSTEM_MOUNTS: SystemMount[] = [
  { target: '/proc', args: (t) => ['-t', 'proc', '-o', 'nosuid,nodev,noexec', '--', 'proc', t] },
  { target: '/sys', args: (t) => ['-t', 'sysfs', '-o', 'nosuid,nodev,noexec,ro', '--', 'sysfs', t] },
  { target: '/dev', args: bindArgs('/dev') },
  { target: '/dev/pts', args: bindArgs('/dev/pts') },
  { target: '/dev/shm', args: (t) => ['-t', 'tmpfs', '-o', 'nosuid,nodev,mode=1777', '--', 'shm', t] },
];

/** Run mount(8) with `args` (built by bindArgs or a SystemMount) at host path `hostTarget`. */
export async function mountAt(hostTarget: string, args: (t: string) => string[]): Promise<void> {
  await run('mount', args(hostTarget), { errorCode: 'JR_E_JOOT' });
}

/** Unmount a host mount point if it is mounted. */
export async function unmountPath(hostTarget: string): Promise<void> {
  if (await isMounted(hostTarget)) await run('umount', ['--', hostTarget], { errorCode: 'JR_E_JOOT' });
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
