// Process-table helpers over /proc: is a pid alive, its start time (so a recycled pid is not
// mistaken for the one we recorded), and finding daemons by their command line.
import { readFile, readdir } from 'node:fs/promises';

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

/** True when the process recorded as `id` is still running (same pid and same start time). */
export async function isAlive(id: ProcId | number): Promise<boolean> {
  const want = typeof id === 'number' ? { pid: id, start: -1 } : id;
  const now = await procId(want.pid);
  return now !== null && (want.start < 0 || now.start === want.start);
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
