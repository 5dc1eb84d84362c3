// Summaries of a spool that may hold tens of thousands of entries, for `jobrunner status`: the
// directories are read as streams, each entry is lstat'ed (a bounded number at once) and only the
// few entries shown are kept, so time is one lstat per entry and memory is O(shown), however
// large the queue or the result directories grow. Read-only: nothing is claimed or moved.
import { opendir, lstat } from 'node:fs/promises';
import path from 'node:path';
import { readJson } from '../fsutil.js';
import { parseSubmission } from './names.js';
import type { JobStatus } from './record.js';
import type { QueuedEntry, ResultEntry } from './spool.js';

const PARALLEL = 64;

export interface QueueSummary {
  /** Submissions waiting in queue/. */
  count: number;
  bytes: number;
  /** The `shown` oldest (by mtime), oldest first. */
  oldest: QueuedEntry[];
}

/** Keep the `n` smallest items by `key` seen so far (n is small: insertion into a sorted array). */
function keeper<T>(n: number, key: (t: T) => number): { add: (t: T) => void; items: T[] } {
  const items: T[] = [];
  return {
    items,
    add(t: T): void {
      if (n <= 0) return;
      const k = key(t);
      if (items.length >= n && k >= key(items[items.length - 1]!)) return;
      let i = items.length;
      while (i > 0 && key(items[i - 1]!) > k) i--;
      items.splice(i, 0, t);
      if (items.length > n) items.pop();
    },
  };
}

/** lstat every entry of `dir` accepted by `want`, PARALLEL at a time, calling `each` with it. */
async function statAll(dir: string, want: (name: string) => boolean, each: (name: string, mtimeMs: number, size: number) => void): Promise<void> {
  const d = await opendir(dir, { bufferSize: 256 }).catch(() => null);
  if (!d) return;
  let batch: string[] = [];
  const flush = async (): Promise<void> => {
    const sts = await Promise.all(batch.map((f) => lstat(path.join(dir, f)).catch(() => null)));
    sts.forEach((st, i) => { if (st) each(batch[i]!, st.mtimeMs, st.size); });
    batch = [];
  };
  for await (const e of d) {
    if (!want(e.name)) continue;
    batch.push(e.name);
    if (batch.length >= PARALLEL) await flush();
  }
  await flush();
}

/** Count and size of the queue, and its `shown` oldest submissions. */
export async function summariseQueue(queue: string, shown: number): Promise<QueueSummary> {
  const out = { count: 0, bytes: 0 };
  const keep = keeper<QueuedEntry & { ms: number }>(shown, (q) => q.ms);
  await statAll(queue, (f) => parseSubmission(f) !== null, (file, ms, bytes) => {
    out.count++;
    out.bytes += bytes;
    keep.add({ file, bytes, since: new Date(ms).toISOString(), ms });
  });
  return { ...out, oldest: keep.items.map(({ file, bytes, since }) => ({ file, bytes, since })) };
}

/**
 * How many results done/ and failed/ hold, and the `shown` newest, newest first. NAME.json is
 * written once, when the result is published, so its mtime orders results: only the newest
 * `shown` are read, then ordered by their own finishedAt.
 */
export async function recentResults(dirs: string[], shown: number): Promise<{ count: number; recent: ResultEntry[] }> {
  let count = 0;
  const keep = keeper<{ dir: string; file: string; ms: number }>(shown, (r) => -r.ms);
  for (const dir of dirs) {
    await statAll(dir, (f) => f.endsWith('.json') && !f.startsWith('.'), (file, ms) => { count++; keep.add({ dir, file, ms }); });
  }
  const recent: ResultEntry[] = [];
  for (const r of keep.items) {
    const status = await readJson(path.join(r.dir, r.file)) as JobStatus | null;
    if (status?.finishedAt) recent.push({ dir: r.dir, status });
  }
  recent.sort((a, b) => b.status.finishedAt.localeCompare(a.status.finishedAt));
  return { count, recent };
}
