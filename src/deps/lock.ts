// A lock per cache key that works across processes (two services may share one deps cache),
// on the house lock helper (src/lock.ts: O_EXCL file with the holder's identity, stale ones broken).
import { JrError } from '../errors.js';
import { breakStale, tryLock, withLock as houseLock } from '../lock.js';

/** Run fn holding `file` as a lock; waits up to timeoutMs (a layer build takes minutes) for another holder. */
export function withLock<T>(file: string, fn: () => Promise<T>, timeoutMs = 3 * 3600_000): Promise<T> {
  return houseLock(file, fn, timeoutMs, (holder) => new JrError('JR_E_INTERNAL', `timed out waiting for the lock ${file} (held by ${holder})`));
}

/** Take `file` now if no live process holds it (a stale one is broken first); false when one does. */
export async function tryLockNow(file: string): Promise<boolean> {
  await breakStale(file);
  return tryLock(file);
}
