// Is a queued file ready to claim? Judged for a whole window of names at once: one lstat each (a
// bounded number in flight) and one writer scan (spool/writers.ts) for all of them, so the cost
// per file is one stat, whatever the queue holds. "Unchanged for T" is read from the inode's ctime,
// which the kernel sets on every write, truncate and rename and no submitter can set back: nothing
// has to be watched for T, and a file copied in long ago is claimed without any wait.
import type { Stats } from 'node:fs';
import { lstat } from 'node:fs/promises';
import path from 'node:path';
import { mapLimit } from '../semaphore.js';
import { inodeKey, scanWriters } from './writers.js';

/** A file nobody is writing is claimed once it has been unchanged this long (its last rename included). */
export const QUICK_LOOK_MS = 200;
const STAT_PARALLEL = 16;

export interface Looked {
  file: string;
  mtime: Date;
  /** From the same lstat: its size, and whether it was a plain single-link file then (a hint: the claim judges again). */
  size: number;
  plain: boolean;
}

export interface Settled {
  /** Unchanged long enough and not open for writing, in the order asked. */
  ready: Looked[];
  /** Still changing, open for writing, or too recent: look again later. */
  waiting: string[];
  /** When the earliest waiting file may be ready (ms from now); Infinity when none waits. */
  retryMs: number;
  /** The writer scan could read every process's descriptors. */
  complete: boolean;
}

/** Our own sightings of a file whose ctime is in the future (a skewed clock on a network file system). */
export type Sightings = Map<string, { key: string; ctimeMs: number; at: number }>;

interface Entry { file: string; st: Stats }

/**
 * Settle `files` (names in `dir`): ready when unchanged for QUICK_LOOK_MS and no process has it
 * open for writing, or, when writers cannot all be seen (not root) or one holds it, unchanged for
 * settleMs and not held. Entries that vanished are dropped; entries that are not regular files are
 * ready after the quick look (the service claims and rejects them). `seen` carries sightings
 * between calls for files whose ctime cannot be trusted.
 */
export async function settleWindow(dir: string, files: Iterable<string>, settleMs: number, seen: Sightings): Promise<Settled> {
  const entries: Entry[] = [];
  await mapLimit(files, STAT_PARALLEL, async (file) => {
    const st = await lstat(path.join(dir, file)).catch(() => null);
    if (st) entries.push({ file, st });
  });
  const order = new Map<string, number>();
  let i = 0;
  for (const f of files) order.set(f, i++);
  entries.sort((a, b) => order.get(a.file)! - order.get(b.file)!);

  const wanted = new Set(entries.filter((e) => e.st.isFile()).map((e) => inodeKey(e.st)));
  const writers = await scanWriters(wanted);
  const quick = Math.min(QUICK_LOOK_MS, settleMs);
  const now = Date.now();
  const out: Settled = { ready: [], waiting: [], retryMs: Infinity, complete: writers.complete };
  for (const { file, st } of entries) {
    const key = inodeKey(st);
    const busy = writers.busy.has(key);
    const need = !st.isFile() || (writers.complete && !busy) ? quick : settleMs;
    let age = now - st.ctimeMs;
    if (age < 0) {
      // A ctime ahead of our clock proves nothing: count from our first sighting of that same ctime.
      const s = seen.get(file);
      if (s && s.key === key && s.ctimeMs === st.ctimeMs) age = now - s.at;
      else seen.set(file, { key, ctimeMs: st.ctimeMs, at: now });
    }
    if (!busy && age >= need) {
      seen.delete(file);
      out.ready.push({ file, mtime: st.mtime, size: st.size, plain: st.isFile() && st.nlink === 1 });
    } else {
      out.waiting.push(file);
      out.retryMs = Math.min(out.retryMs, busy ? settleMs : Math.max(need - age, 1));
    }
  }
  return out;
}
