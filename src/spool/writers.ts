// Is anyone still writing these files? One walk of /proc/*/fd answers it for a whole scan's
// candidates at once (an inode set), so the cost is one pass over the process table per scan, not
// one per queued file. Only complete when we can read every process's fds (root); callers fall
// back to a longer quiet period otherwise.
import { readdir, readFile, readlink, stat } from 'node:fs/promises';
import { mapLimit } from '../semaphore.js';

export interface WriterScan {
  /** Keys (see inodeKey) of the asked-for files some process holds open for writing. */
  busy: Set<string>;
  /** We could inspect every process (false: some /proc/<pid>/fd were unreadable). */
  complete: boolean;
}

/** The identity a writer check matches on: device and inode, never the name. */
export function inodeKey(st: { dev: number; ino: number }): string {
  return `${st.dev}:${st.ino}`;
}

const O_ACCMODE = 0o3;
// Processes inspected at once: enough to hide the latency of the thread pool, few enough that a
// machine with thousands of processes does not queue thousands of directory reads.
const PROC_PARALLEL = 8;

/**
 * Which of `files` (inode keys) are open for writing by another process: one /proc walk for all of
 * them; an empty set costs nothing. Per descriptor: readlink (pipes, sockets and anon inodes are
 * skipped), stat for device and inode, and the fdinfo access mode only for a wanted inode.
 */
export async function scanWriters(files: ReadonlySet<string>): Promise<WriterScan> {
  const busy = new Set<string>();
  if (files.size === 0) return { busy, complete: true };
  let complete = true;
  const pids = (await readdir('/proc')).filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid);
  await mapLimit(pids, PROC_PARALLEL, async (pid) => {
    let fds: string[];
    try { fds = await readdir(`/proc/${pid}/fd`); } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') complete = false;
      return;
    }
    for (const fd of fds) {
      const link = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
      if (!link.startsWith('/')) continue;
      const st = await stat(`/proc/${pid}/fd/${fd}`).catch(() => null);
      if (!st) continue;
      const key = inodeKey(st);
      if (!files.has(key) || busy.has(key)) continue;
      const info = await readFile(`/proc/${pid}/fdinfo/${fd}`, 'utf8').catch(() => '');
      const flags = /^flags:\s+([0-7]+)/m.exec(info);
      // No flags (the fd closed between the reads, or a format we do not know): counted as a writer.
      if (!flags || (parseInt(flags[1]!, 8) & O_ACCMODE) !== 0) busy.add(key);
    }
  });
  return { busy, complete };
}
