// The processes of one sandbox, found by their pid namespace (every process in it shares the
// namespace of the sandbox's pid 1), so signals reach the whole sandbox and nothing else.
import { readdir, readlink } from 'node:fs/promises';

/** The pid namespace identity of `pid` (e.g. "pid:[4026532401]"), or null when it is gone. */
export async function pidNamespace(pid: number): Promise<string | null> {
  return readlink(`/proc/${pid}/ns/pid`).catch(() => null);
}

/** Host pids of every live process in pid namespace `ns`. */
export async function pidsInNamespace(ns: string): Promise<number[]> {
  const out: number[] = [];
  for (const p of await readdir('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    if ((await pidNamespace(Number(p))) === ns) out.push(Number(p));
  }
  return out;
}

/** Send `sig` to every process in `ns` (except `spare`); returns how many were signalled. */
export async function signalNamespace(ns: string, sig: NodeJS.Signals, spare: number[] = []): Promise<number> {
  let n = 0;
  for (const pid of await pidsInNamespace(ns)) {
    if (spare.includes(pid)) continue;
    try { process.kill(pid, sig); n++; } catch { /* already gone */ }
  }
  return n;
}
