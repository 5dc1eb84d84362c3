// Group commit for the spool's durability points. A claim or a publish must know that what it
// wrote is on disk before it goes on (the lease before the input is moved in, a result's files
// before its NAME.json is linked, the names before the claim is dropped). One fsync per file made
// a flood of 10,000 files cost ~50,000 journal commits, four at a time (libuv's thread pool):
// minutes. Instead a caller waits for a barrier: one syncfs(2) of the file system holding the
// spool, started after the caller's changes, which makes every change made before it durable
// (file data, inodes and directory entries alike; stronger than an fsync of each file). Callers
// that arrive while a barrier runs share the next one, so a flood needs a few syncfs calls per
// batch of files in flight, not one fsync per file. The cost: a syncfs also flushes other
// writers' dirty data on that file system (e.g. a running VM's work image), so one barrier can
// take longer on a busy disk; it never gives up durability.
import { stat } from 'node:fs/promises';
import { run } from './proc.js';

/** Per file system: the barrier newcomers will share (not started yet) and the one running. */
const next = new Map<number, Promise<void>>();
const running = new Map<number, Promise<void>>();
/** Spool directories are few and fixed: their device is looked up once. */
const devOf = new Map<string, Promise<number>>();
const LINGER_MS = 3;
/** Barriers run since start (bench/intake reports them). */
export const barrierStats = { syncs: 0, waits: 0 };

/** syncfs(2) of the file system holding `dir` (coreutils `sync -f`; node has no binding for it). */
async function syncfs(dir: string): Promise<void> {
  barrierStats.syncs++;
  await run('sync', ['-f', '--', dir]);
}

/**
 * Resolve once everything written to the file system holding `dir` before this call is durable:
 * a syncfs started after the call has completed. Concurrent callers share that syncfs.
 */
export async function syncShared(dir: string): Promise<void> {
  barrierStats.waits++;
  let d = devOf.get(dir);
  if (!d) { d = stat(dir).then((st) => st.dev); devOf.set(dir, d); d.catch(() => devOf.delete(dir)); }
  const dev = await d;
  const waiting = next.get(dev);
  if (waiting) return waiting;
  const start = (): Promise<void> => {
    next.delete(dev);
    const r: Promise<void> = syncfs(dir).finally(() => { if (running.get(dev) === r) running.delete(dev); });
    running.set(dev, r);
    return r;
  };
  // A short linger lets the others in flight (a flood's claims run in step) reach the same barrier.
  const lingered = (): Promise<void> => new Promise<void>((r) => setTimeout(r, LINGER_MS)).then(start);
  const cur = running.get(dev);
  // The running syncfs may have started before our change: wait for it, then start one that covers us.
  const mine = cur ? cur.then(lingered, lingered) : lingered();
  next.set(dev, mine);
  return mine;
}
