// A lock per cache key that works across processes (two services may share one deps cache):
// an O_EXCL lock file holding the owner's pid; a lock whose owner is dead is taken over.
// house-struct is adding a general lock helper; this one is small so it can switch to it.
import { open, readFile, rm } from 'node:fs/promises';
import { pidAlive } from '../fsutil.js';
import { JrError } from '../errors.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Run fn holding `file` as a lock; waits (polling) up to timeoutMs for another holder. */
export async function withLock<T>(file: string, fn: () => Promise<T>, timeoutMs = 3 * 3600_000): Promise<T> {
  const started = Date.now();
  for (;;) {
    try {
      const fh = await open(file, 'wx', 0o644);
      await fh.writeFile(String(process.pid));
      await fh.close();
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const owner = Number(await readFile(file, 'utf8').catch(() => ''));
      // An empty file is a holder between open and write: give it a moment, never steal it at once.
      if (Number.isInteger(owner) && owner > 0 && !pidAlive(owner)) { await rm(file, { force: true }); continue; }
      if (Date.now() - started > timeoutMs) throw new JrError('JR_E_INTERNAL', `timed out waiting for the lock ${file} (held by pid ${owner})`);
      await sleep(250);
    }
  }
  try { return await fn(); } finally { await rm(file, { force: true }); }
}
