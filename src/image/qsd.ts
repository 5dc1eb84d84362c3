// qemu-storage-daemon as a FUSE exporter: it opens a qcow2/vmdk/… image and exposes its guest view
// as a plain raw file that losetup or fuse2fs can use. This replaces qemu-nbd + /dev/nbdX, which
// needs a kernel module we do not have.
import { open, readFile, rm } from 'node:fs/promises';
import { run } from '../proc.js';
import { JrError } from '../errors.js';
import { isMounted } from './mountinfo.js';
import { procId, signal, waitGone, type ProcId } from '../procfs.js';
import type { ImageFormat } from './probe.js';

export interface ExportSpec {
  image: string;
  format: ImageFormat;
  /** Regular file to mount the export on; created if missing. */
  exportFile: string;
  pidFile: string;
  writable: boolean;
}

/** The --blockdev and --export arguments, in qemu's JSON syntax (pure). JSON, not key=value: qemu
 *  splits key=value option strings on commas, so a path with a comma would inject options. */
export function qsdArgs(s: ExportSpec): string[] {
  const blockdev = {
    driver: s.format, 'node-name': 'img', 'read-only': !s.writable, discard: 'unmap',
    file: { driver: 'file', filename: s.image, 'read-only': !s.writable },
  };
  const exp = {
    type: 'fuse', id: 'exp', 'node-name': 'img', mountpoint: s.exportFile,
    writable: s.writable, growable: false, 'allow-other': 'off',
  };
  return ['--daemonize', '--pidfile', s.pidFile, '--blockdev', JSON.stringify(blockdev), '--export', JSON.stringify(exp)];
}

/** Start the daemon; resolves once the raw view is mounted at exportFile. Returns the daemon. */
export async function startExport(s: ExportSpec): Promise<ProcId> {
  // FUSE mounts over an existing regular file; an empty one is enough.
  await (await open(s.exportFile, 'a', 0o600)).close();
  await run('qemu-storage-daemon', qsdArgs(s), { errorCode: 'JR_E_BASE_IMAGE', timeoutMs: 30_000 });
  // --daemonize returns after the export is set up and the pid file is written.
  const pid = Number((await readFile(s.pidFile, 'utf8')).trim());
  const id = Number.isInteger(pid) && pid > 0 ? await procId(pid) : null;
  if (!id || !(await isMounted(s.exportFile))) {
    throw new JrError('JR_E_PROCESS', `qemu-storage-daemon did not export ${s.image} at ${s.exportFile}`);
  }
  return id;
}

/** Is `id` still our daemon? A recycled pid must never be killed. */
async function isOurDaemon(id: ProcId, exportFile: string): Promise<boolean> {
  const now = await procId(id.pid);
  if (!now || now.start !== id.start) return false;
  try {
    const argv = (await readFile(`/proc/${id.pid}/cmdline`, 'utf8')).split('\0');
    return argv.some((a) => a.includes(JSON.stringify(exportFile).slice(1, -1)));
  } catch {
    return false;
  }
}

/** Stop the daemon (TERM, then KILL after a grace period), make sure the FUSE mount is gone,
 *  remove the export and pid files. Idempotent. */
export async function stopExport(id: ProcId, exportFile: string, pidFile: string): Promise<void> {
  if (await isOurDaemon(id, exportFile)) {
    // SIGTERM lets qemu flush qcow2 metadata and unmount the export itself.
    signal(id.pid, 'SIGTERM');
    if (!(await waitGone(id, 10_000))) {
      signal(id.pid, 'SIGKILL');
      await waitGone(id, 5_000);
    }
  }
  if (await isMounted(exportFile)) {
    // Only left behind when the daemon was killed: detach the dead FUSE mount.
    await run('umount', ['--lazy', '--', exportFile], { reject: false });
    if (await isMounted(exportFile)) await run('fusermount', ['-u', '-z', '--', exportFile], { reject: false });
  }
  if (await isMounted(exportFile)) throw new JrError('JR_E_PROCESS', `FUSE export still mounted at ${exportFile}`);
  await rm(exportFile, { force: true });
  await rm(pidFile, { force: true });
}
