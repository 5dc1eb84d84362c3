// The one inter-process lock: a lock file created with O_EXCL|O_NOFOLLOW holding its owner's pid
// and start time ("PID START"), so a crashed owner is told apart from a process that got its pid
// later. Node has no flock(); a lock file is enough because holders are few and a dead owner is
// detected. Used for the service's spool lock (service.ts) and joot's bookkeeping (joot/lock.ts).
import { constants } from 'node:fs';
import { lstat, open, readFile, rm } from 'node:fs/promises';
import { isAlive, selfId, type ProcId } from './procfs.js';

/**
 * The live owner recorded in `file`, or null (no file, not a regular file, unreadable, or its
 * owner is gone). Never follows a symlink: lock files may sit where others can plant entries.
 */
export async function lockHolder(file: string): Promise<ProcId | null> {
  let text: string;
  try {
    const fh = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    try {
      if (!(await fh.stat()).isFile()) return null;
      text = await fh.readFile('utf8');
    } finally { await fh.close(); }
  } catch { return null; }
  const [pid, start] = text.trim().split(/\s+/).map(Number);
  if (!pid || !Number.isInteger(pid) || pid <= 0) return null;
  // A lock written with a bare pid (older jobrunner) is judged by the pid alone.
  const id = { pid, start: start === undefined || Number.isNaN(start) ? -1 : start };
  return (await isAlive(id)) ? id : null;
}

/** Create `file` holding our identity; false when it exists already (someone else's, or stale). */
export async function tryLock(file: string): Promise<boolean> {
  const me = await selfId();
  let fh;
  try {
    fh = await open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
  try { await fh.writeFile(`${me.pid} ${me.start}\n`); } finally { await fh.close(); }
  return true;
}

/**
 * Remove `file` when no live owner holds it. An empty file younger than `emptyGraceMs` is being
 * written right now and is left alone. The inode check narrows (does not close) the window in
 * which two waiters both judge the same stale lock and one removes the other's fresh lock.
 */
export async function breakStale(file: string, emptyGraceMs = 5_000): Promise<void> {
  const st = await lstat(file).catch(() => null);
  if (!st) return;
  if (st.isFile()) {
    const text = await readFile(file, 'utf8').catch(() => '');
    if (!text.trim() && Date.now() - st.mtimeMs < emptyGraceMs) return;
    if (await lockHolder(file)) return;
  }
  const again = await lstat(file).catch(() => null);
  if (again && again.ino === st.ino) await rm(file, { recursive: true, force: true });
}

/** Release a lock we hold. */
export async function unlock(file: string): Promise<void> {
  await rm(file, { force: true });
}

/**
 * Run `fn` holding `file`, waiting up to `timeoutMs` for another holder; on timeout throws what
 * `onTimeout` makes of the holder's record.
 */
export async function withLock<T>(file: string, fn: () => Promise<T>, timeoutMs: number, onTimeout: (holder: string) => Error): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (let delay = 2; !(await tryLock(file)); delay = Math.min(delay * 2, 50)) {
    await breakStale(file);
    if (Date.now() > until) throw onTimeout((await readFile(file, 'utf8').catch(() => '?')).trim());
    await new Promise((r) => setTimeout(r, delay));
  }
  try {
    return await fn();
  } finally {
    await unlock(file);
  }
}
