// joot's bookkeeping lock (mount state, sessions): the shared lock file helper (src/lock.ts) with
// joot's error when another holder keeps it too long.
import { JrError } from '../errors.js';
import { withLock as withLockFile } from '../lock.js';

/** Run `fn` while holding the lock `file`; waits up to timeoutMs for another holder. */
export function withLock<T>(file: string, fn: () => Promise<T>, timeoutMs = 60_000): Promise<T> {
  return withLockFile(file, fn, timeoutMs, (held) => new JrError('JR_E_JOOT', `timed out waiting for lock ${file} (held by: ${held})`));
}
