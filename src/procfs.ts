// The one module that reads the process table (/proc): is a pid alive, its start time (so a
// recycled pid is not mistaken for the one we recorded), a process's argv, finding processes by
// their command line, a process's parent, and which files a process holds open (fd scans).
import { readFile, readdir, readlink } from 'node:fs/promises';
import path from 'node:path';

export interface ProcId {
  pid: number;
  /** Start time in clock ticks since boot (field 22 of /proc/PID/stat). */
  start: number;
}

async function statFields(pid: number): Promise<string[] | null> {
  try {
    const s = await readFile(`/proc/${pid}/stat`, 'utf8');
    // comm (field 2) may contain spaces and parentheses: fields resume after the last ')'.
    return s.slice(s.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** The identity of a live process, or null if it is gone or a zombie. */
export async function procId(pid: number): Promise<ProcId | null> {
  const f = await statFields(pid);
  if (!f || f[0] === 'Z' || f[0] === 'X') return null;
  return { pid, start: Number(f[19]) };
}

/** The parent pid of `pid` (field 4 of /proc/PID/stat), null when it is gone. */
export async function parentOf(pid: number): Promise<number | null> {
  const f = await statFields(pid);
  const ppid = f ? Number(f[1]) : NaN;
  return Number.isInteger(ppid) ? ppid : null;
}

/** True when the process recorded as `id` is still running (same pid and same start time). */
export async function isAlive(id: ProcId | number): Promise<boolean> {
  const want = typeof id === 'number' ? { pid: id, start: -1 } : id;
  const now = await procId(want.pid);
  return now !== null && (want.start < 0 || now.start === want.start);
}

/** The identity of this process (start time -1 if /proc cannot tell it). */
export async function selfId(): Promise<ProcId> {
  return (await procId(process.pid)) ?? { pid: process.pid, start: -1 };
}

/** argv of a process (empty when it is gone or unreadable), empty arguments dropped. */
export async function argvOf(pid: number): Promise<string[]> {
  const raw = await readFile(`/proc/${pid}/cmdline`).catch(() => Buffer.alloc(0));
  return raw.toString('utf8').split('\0').filter((a) => a !== '');
}

/** True when process `pid` has a file descriptor open on something under directory `dir`. */
export async function holdsFilesUnder(pid: number, dir: string): Promise<boolean> {
  const prefix = path.resolve(dir) + '/';
  const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
  for (const fd of fds) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    if (target.startsWith(prefix)) return true;
  }
  return false;
}

/** Pids of live processes whose argv satisfies `match` (zombies have no argv and never match). */
export async function findProcesses(match: (argv: string[]) => boolean): Promise<number[]> {
  const out: number[] = [];
  for (const d of await readdir('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let raw: string;
    try { raw = await readFile(`/proc/${d}/cmdline`, 'utf8'); } catch { continue; }
    if (!raw) continue;
    if (match(raw.replace(/\0$/, '').split('\0'))) out.push(Number(d));
  }
  return out;
}

/** Wait until `id` has exited; true if it did within `ms`. */
export async function waitGone(id: ProcId | number, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  for (let delay = 2; ; delay = Math.min(delay * 2, 50)) {
    if (!(await isAlive(id))) return true;
    if (Date.now() >= until) return false;
    await new Promise((r) => setTimeout(r, delay));
  }
}

/** Send a signal, ignoring "no such process". */
export function signal(pid: number, sig: NodeJS.Signals): void {
  try { process.kill(pid, sig); } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
  }
}
