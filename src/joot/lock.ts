// A small inter-process lock: an O_EXCL lock file holding the owner's pid and start time. Node has
// no flock(); a pid file is enough here because critical sections are short (mount bookkeeping) and
// a crashed owner is detected by its pid no longer running.
import { open, readFile, rm, stat } from 'node:fs/promises';
import { JrError } from '../errors.js';
import { isAlive, procId, type ProcId } from '../image/pids.js';

async function me(): Promise<ProcId> {
  return (await procId(process.pid)) ?? { pid: process.pid, start: -1 };
}

async function tryTake(file: string, id: ProcId): Promise<boolean> {
  try {
    const fh = await open(file, 'wx', 0o644);
    await fh.writeFile(`${id.pid} ${id.start}\n`);
    await fh.close();
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
}

/** Remove `file` if its owner is dead. The inode check narrows (does not close) the window in which
 *  two waiters both judge the same stale lock and one removes the other's fresh lock. */
async function breakIfStale(file: string): Promise<void> {
  let text: string;
  let ino: number;
  let age: number;
  try {
    const st = await stat(file);
    ino = st.ino;
    age = Date.now() - st.mtimeMs;
    text = await readFile(file, 'utf8');
  } catch { return; }
  const [pid, start] = text.trim().split(' ').map(Number);
  if (!pid || start === undefined || Number.isNaN(start)) {
    // Empty: being written right now, or its writer died between create and write.
    if (age < 5_000) return;
  } else if (await isAlive({ pid, start })) return;
  try {
    if ((await stat(file)).ino === ino) await rm(file, { force: true });
  } catch { /* already gone */ }
}

/** Run `fn` while holding the lock `file`; waits up to timeoutMs for another holder. */
export async function withLock<T>(file: string, fn: () => Promise<T>, timeoutMs = 60_000): Promise<T> {
  const id = await me();
  const until = Date.now() + timeoutMs;
  for (let delay = 2; !(await tryTake(file, id)); delay = Math.min(delay * 2, 50)) {
    await breakIfStale(file);
    if (Date.now() > until) throw new JrError('JR_E_JOOT', `timed out waiting for lock ${file} (held by: ${(await readFile(file, 'utf8').catch(() => '?')).trim()})`);
    await new Promise((r) => setTimeout(r, delay));
  }
  try {
    return await fn();
  } finally {
    await rm(file, { force: true });
  }
}
