// Is anyone still writing this file? Scans /proc/*/fd for descriptors open on it with write
// access. Only complete when we can read every process's fds (root); callers fall back to a
// longer quiet period otherwise.
import { readdir, readFile, readlink, stat } from 'node:fs/promises';

export interface WriterScan {
  /** A process has the file open for writing. */
  busy: boolean;
  /** We could inspect every process (false: some /proc/<pid>/fd were unreadable). */
  complete: boolean;
}

const O_ACCMODE = 0o3;

/** Look for open write descriptors on `file` (matched by device and inode, not by name). */
export async function scanWriters(file: string): Promise<WriterScan> {
  const target = await stat(file).catch(() => null);
  if (!target) return { busy: false, complete: true };
  let complete = true;
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    let fds: string[];
    try { fds = await readdir(`/proc/${pid}/fd`); } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') complete = false;
      continue;
    }
    for (const fd of fds) {
      const link = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
      if (!link.startsWith('/')) continue;
      const st = await stat(`/proc/${pid}/fd/${fd}`).catch(() => null);
      if (!st || st.ino !== target.ino || st.dev !== target.dev) continue;
      const info = await readFile(`/proc/${pid}/fdinfo/${fd}`, 'utf8').catch(() => '');
      const flags = /^flags:\s+([0-7]+)/m.exec(info);
      if (!flags || (parseInt(flags[1]!, 8) & O_ACCMODE) !== 0) return { busy: true, complete };
    }
  }
  return { busy: false, complete };
}
