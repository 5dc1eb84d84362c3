// Mounting base images on the host: raw filesystems and partitioned disks through loop devices,
// qcow2/vmdk/… through a qemu-storage-daemon FUSE export, or fuse2fs when we are not root.
//
// RULE: only base images the operator owns are ever mounted here. Untrusted job images never reach
// the host kernel's filesystem code (a crafted ext4 is a kernel exploit) nor qemu's format probing;
// the guest VM mounts those. Callers pass operator paths: base-image/, joot environments, imports.
//
// Every resource is recorded in the MountState (and handed to `record`, which persists it) the
// moment it exists, so unmountImage can undo exactly what was created even after a crash.
import { access, constants, mkdir, mkdtemp, readFile, rename, rm, rmdir, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { tempName } from '../fsutil.js';
import { run, which } from '../proc.js';
import { JrError } from '../errors.js';
import { isMounted, mounts } from './mountinfo.js';
import { attachLoop, detachLoop, loopPartitions } from './loop.js';
import { startExport, stopExport } from './qsd.js';
import { findProcesses, procId, waitGone } from '../procfs.js';
import { imageInfo, isMountableFs, probeLayout, type ImageFormat, type Layout } from './probe.js';

export type Resource =
  | { kind: 'dir'; path: string; upTo: string }
  | { kind: 'symlink'; path: string }
  | { kind: 'qsd'; pid: number; start: number; exportFile: string; pidFile: string }
  | { kind: 'loop'; dev: string; file: string }
  | { kind: 'mount'; target: string; source: string }
  | { kind: 'fuse2fs'; target: string; pid: number; start: number };

export interface MountState {
  version: 1;
  image: string;
  format: ImageFormat;
  mountpoint: string;
  readOnly: boolean;
  mode: 'loop' | 'fuse';
  layout: Layout['kind'];
  /** Partitions mounted under mountpoint/N (partitioned disks only). */
  partitions: Array<{ nr: number; target: string; fstype: string }>;
  resources: Resource[];
}

export interface MountRequest {
  image: string;
  mountpoint: string;
  /** Skip `qemu-img info` when the caller knows the format. */
  format?: ImageFormat;
  readOnly?: boolean;
  /** 'loop' needs root; 'fuse' uses fuse2fs (ext2/3/4 only) and works without root. */
  mode?: 'loop' | 'fuse';
  /** Where qemu-storage-daemon exposes the raw view of a non-raw image (a path we own). */
  exportFile?: string;
  /** Skip blkid when the caller knows the image is a whole filesystem of this type. */
  fstype?: string;
}

type Record = (s: MountState) => Promise<void>;
const noRecord: Record = async () => {};

/** Mount an operator-owned image at req.mountpoint; on failure everything created is undone. */
export async function mountImage(req: MountRequest, record: Record = noRecord): Promise<MountState> {
  const image = path.resolve(req.image);
  const mountpoint = path.resolve(req.mountpoint);
  const readOnly = req.readOnly ?? false;
  const mode = req.mode ?? 'loop';
  const format = req.format ?? (await imageInfo(image)).format;
  if (mode === 'fuse' && process.getuid?.() !== 0) {
    const why = await unprivilegedFuseProblem();
    if (why) throw new JrError('JR_E_PERMISSION', why);
  }
  const st: MountState = { version: 1, image, format, mountpoint, readOnly, mode, layout: 'filesystem', partitions: [], resources: [] };
  const add = async (r: Resource): Promise<void> => { st.resources.push(r); await record(st); };
  try {
    if (await isMounted(mountpoint)) throw new JrError('JR_E_USAGE', `${mountpoint} is already a mount point`);
    await makeDir(mountpoint, add);
    let rawFile = image;
    if (format !== 'raw') {
      if (!req.exportFile) throw new JrError('JR_E_INTERNAL', `mounting ${format} needs an exportFile`);
      const exportFile = path.resolve(req.exportFile);
      const pidFile = exportFile + '.pid';
      const id = await startExport({ image, format, exportFile, pidFile, writable: !readOnly });
      await add({ kind: 'qsd', pid: id.pid, start: id.start, exportFile, pidFile });
      rawFile = exportFile;
    }
    const layout: Layout = req.fstype ? { kind: 'filesystem', fstype: req.fstype } : await probeLayout(rawFile);
    st.layout = layout.kind;
    if (layout.kind === 'filesystem') {
      await mountOne(st, rawFile, layout.fstype, mountpoint, undefined, add);
    } else {
      const wanted = layout.partitions.filter((p) => isMountableFs(p.fstype) && (mode === 'loop' || /^ext[234]$/.test(p.fstype)));
      if (wanted.length === 0) throw new JrError('JR_E_BASE_IMAGE', `${image}: no mountable filesystem in its ${layout.table} partition table`);
      let devs = new Map<number, string>();
      if (mode === 'loop') {
        const dev = await attachLoop(rawFile, { readOnly, partscan: true });
        await add({ kind: 'loop', dev, file: rawFile });
        devs = await loopPartitions(dev, wanted.map((p) => p.nr));
      }
      for (const p of wanted) {
        const target = path.join(mountpoint, String(p.nr));
        await makeDir(target, add);
        await mountOne(st, rawFile, p.fstype, target, { offset: p.offset, dev: devs.get(p.nr) }, add);
        st.partitions.push({ nr: p.nr, target, fstype: p.fstype });
      }
    }
    await record(st);
    return st;
  } catch (e) {
    await unmountImage(st, record).catch(() => {});
    throw e;
  }
}

/**
 * Why FUSE cannot work for this (non-root) user, with what to change; null when it can.
 * Checked before anything is started, so a refused --fuse leaves nothing behind.
 */
export async function unprivilegedFuseProblem(dev = '/dev/fuse'): Promise<string | null> {
  const st = await stat(dev).catch(() => null);
  if (!st) return `--fuse needs ${dev}, which does not exist: load the fuse module (modprobe fuse) or, in a container, pass the device in (--device /dev/fuse)`;
  // access() checks the real uid, which is the user who would open the device.
  const usable = await access(dev, constants.R_OK | constants.W_OK).then(() => true, () => false);
  if (!usable) {
    const mode = (st.mode & 0o7777).toString(8).padStart(4, '0');
    return `--fuse needs ${dev} readable and writable by you (uid ${process.getuid?.()}), but it is mode ${mode} owned by uid ${st.uid} gid ${st.gid}. `
      + `Ask an administrator to run \`chmod 0666 ${dev}\` (the usual default; make it permanent with the udev rule KERNEL=="fuse", MODE="0666"), or run rawmount as root without --fuse`;
  }
  if (!(await which('fusermount3')) && !(await which('fusermount'))) {
    return '--fuse needs fusermount3 (or fusermount) on PATH to mount without root: install the fuse3 package';
  }
  return null;
}

async function makeDir(dir: string, add: (r: Resource) => Promise<void>): Promise<void> {
  const first = await mkdir(dir, { recursive: true });
  if (first !== undefined) await add({ kind: 'dir', path: dir, upTo: first });
}

async function mountOne(st: MountState, rawFile: string, fstype: string, target: string,
  part: { offset: number; dev: string | undefined } | undefined, add: (r: Resource) => Promise<void>): Promise<void> {
  const ro = st.readOnly;
  if (st.mode === 'fuse') {
    const opts = [ro ? 'ro' : 'rw'];
    if (part) opts.push(`offset=${part.offset}`);
    if (process.getuid?.() !== 0) opts.push('fakeroot');
    // fuse2fs pastes the image path into a FUSE option string (fsname=PATH), where a comma would start
    // another option: give it a comma-free alias instead.
    let dev = rawFile;
    if (/[,\\]/.test(rawFile)) {
      const d = await mkdtemp(path.join(os.tmpdir(), 'fuse2fs-'));
      await add({ kind: 'dir', path: d, upTo: d });
      dev = path.join(d, 'image');
      await symlink(rawFile, dev);
      await add({ kind: 'symlink', path: dev });
    }
    await run('fuse2fs', [dev, target, '-o', opts.join(',')], { errorCode: 'JR_E_BASE_IMAGE' });
    const [pid] = await findProcesses((a) => /(^|\/)fuse2fs$/.test(a[0] ?? '') && a[1] === dev && a[2] === target);
    const id = pid === undefined ? null : await procId(pid);
    await add({ kind: 'fuse2fs', target, pid: id?.pid ?? 0, start: id?.start ?? 0 });
    if (!(await isMounted(target))) throw new JrError('JR_E_BASE_IMAGE', `fuse2fs did not mount ${rawFile} at ${target}`);
    return;
  }
  // noload: a read-only mount must not replay the journal (that would write to the image).
  const opts = ro ? (/^ext[34]$/.test(fstype) ? 'ro,noload' : 'ro') : 'rw';
  if (part?.dev) {
    await run('mount', ['-t', fstype, '-o', opts, '--', part.dev, target], { errorCode: 'JR_E_BASE_IMAGE' });
    await add({ kind: 'mount', target, source: part.dev });
    return;
  }
  // A whole filesystem: `mount -o loop` attaches the loop device (with autoclear, so unmounting frees
  // it) in the same process; one process less on the path of every joot enter.
  await run('mount', ['-t', fstype, '-o', `loop,${opts}`, '--', rawFile, target], { errorCode: 'JR_E_BASE_IMAGE' });
  const dev = (await mounts()).find((m) => m.mountpoint === target)?.source ?? '';
  if (/^\/dev\/loop\d+$/.test(dev)) await add({ kind: 'loop', dev, file: rawFile }); // detached after the unmount if autoclear did not
  await add({ kind: 'mount', target, source: dev });
}

/** Undo a MountState in reverse order. Stops at the first resource that will not go (e.g. a busy
 *  mount) and throws, leaving the state listing exactly what is still there. */
export async function unmountImage(st: MountState, record: Record = noRecord): Promise<void> {
  while (st.resources.length > 0) {
    const r = st.resources[st.resources.length - 1]!;
    await release(r);
    st.resources.pop();
    await record(st);
  }
}

async function release(r: Resource): Promise<void> {
  switch (r.kind) {
    case 'mount':
      if (await isMounted(r.target)) await run('umount', ['--', r.target], { errorCode: 'JR_E_PROCESS' });
      return;
    case 'fuse2fs':
      if (await isMounted(r.target)) {
        const cmd = process.getuid?.() === 0 ? ['umount', '--', r.target] : ['fusermount', '-u', '--', r.target];
        await run(cmd[0]!, cmd.slice(1), { errorCode: 'JR_E_PROCESS' });
      }
      // fuse2fs flushes and closes the image after the unmount: wait, so the image is complete.
      if (r.pid > 0 && !(await waitGone({ pid: r.pid, start: r.start }, 30_000))) {
        throw new JrError('JR_E_PROCESS', `fuse2fs (pid ${r.pid}) did not exit after unmounting ${r.target}`);
      }
      return;
    case 'loop':
      return detachLoop(r.dev, r.file);
    case 'qsd':
      return stopExport({ pid: r.pid, start: r.start }, r.exportFile, r.pidFile);
    case 'symlink':
      await rm(r.path, { force: true });
      return;
    case 'dir':
      // Remove the directories we created, innermost first; stop at one that is not empty.
      for (let d = r.path; d.startsWith(r.upTo); d = path.dirname(d)) {
        try { await rmdir(d); } catch { return; }
        if (d === r.upTo) return;
      }
  }
}

/** Persist a state atomically (temp file + rename), so a crash never leaves half a record. */
export async function saveState(file: string, st: unknown): Promise<void> {
  const tmp = tempName(path.dirname(file), path.basename(file));
  await writeFile(tmp, JSON.stringify(st, null, 2) + '\n');
  await rename(tmp, file);
}

/** Load a state written by saveState, or null if there is none. */
export async function loadState<T = MountState>(file: string): Promise<T | null> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}
