// Group commit for directory fsyncs: many claims (queue/, queue/.running) and publishes (done/,
// failed/) change the same few directories at once, and each must know its change is durable. One
// fsync covers every change made before it started, so a caller joins the next fsync of that
// directory instead of issuing its own: under a flood, a handful of fsyncs instead of one per file.
import { fsyncPath } from './fsutil.js';

/** The fsync each directory's newcomers will share (not started yet: it covers their changes). */
const next = new Map<string, Promise<void>>();
const running = new Map<string, Promise<void>>();

/**
 * Resolve once `dir` has been fsynced by a call that started after this one was made (so it
 * covers every change the caller made before calling); concurrent callers share that fsync.
 */
export function fsyncShared(dir: string): Promise<void> {
  const waiting = next.get(dir);
  if (waiting) return waiting;
  const start = (): Promise<void> => {
    next.delete(dir);
    const r: Promise<void> = fsyncPath(dir).finally(() => { if (running.get(dir) === r) running.delete(dir); });
    running.set(dir, r);
    return r;
  };
  const cur = running.get(dir);
  if (!cur) return start();
  // The running fsync may have started before our change: wait for it, then start one that covers us.
  const mine = cur.then(start, start);
  next.set(dir, mine);
  return mine;
}
