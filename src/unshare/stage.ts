// The job's files, moved from its untrusted image into a filesystem we made: a fresh, empty ext4 of
// the same size, mounted on the host, filled through the one API every host-side reader of a job
// image uses (image/extract-tree.ts: debugfs parses the image confined, we copy the mapped blocks
// ourselves, with caps on bytes, entries and depth). The submitted bytes never reach the host
// kernel's ext4 code. Only regular files, directories, symlinks and hard links come over, without
// set-id bits; then everything is given to root inside. The trusted filesystem bounds the copy too.
import { JrError, isJrError } from '../errors.js';
import { extractTree } from '../image/extract-tree.js';
import { run } from '../proc.js';
import { sanitizeStaged } from './tree.js';

const SBIN = { PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin` };

/** Make a fresh empty ext4 of `bytes` at `file` whose root directory belongs to `owner` (host id). */
export async function makeEmptyExt4(file: string, bytes: number, owner: number, label: string): Promise<void> {
  await run('mke2fs', ['-q', '-F', '-t', 'ext4', '-i', '8192', '-L', label,
    '-E', `root_owner=${owner}:${owner},assume_storage_prezeroed=1`, file, `${Math.floor(bytes / 1024)}k`],
  { env: { ...SBIN, MKE2FS_CONFIG: '/etc/mke2fs.conf' }, errorCode: 'JR_E_PROCESS' });
}

/** What came out of the copy: entries kept, entries skipped (FIFOs, devices...), time taken. */
export interface StageResult { entries: number; dropped: number; ms: number }

/**
 * Copy every file of the job image `image` into the mounted trusted filesystem `dest` (owned by
 * `idBase`). Throws JR_E_INPUT when the image cannot be read as ext2/3/4, breaks a cap, or its
 * content does not fit: the job is rejected as a bad image, as when the guest cannot mount it.
 */
export async function stageJobFiles(image: string, dest: string, idBase: number): Promise<StageResult> {
  const started = Date.now();
  let skipped: string[];
  try {
    ({ skipped } = await extractTree(image, '/', dest));
  } catch (e) {
    if (isJrError(e)) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'EFBIG' || code === 'EDQUOT') {
      throw new JrError('JR_E_INPUT', `the job image's files do not fit in a fresh filesystem of the image's own size: ${(e as Error).message}`, { cause: e });
    }
    throw e;
  }
  const s = await sanitizeStaged(dest, { base: idBase });
  return { entries: s.entries, dropped: skipped.length + s.dropped, ms: Date.now() - started };
}
