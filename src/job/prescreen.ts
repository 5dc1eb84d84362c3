// Host-side checks of a claimed input that need no VM, done at intake: a file that cannot be a job
// (empty, over max-image-size, an uncompressed file without an ext2/3/4 superblock) is published
// as rejected at once, with the input as evidence, so a flood of junk never waits for, nor holds,
// a VM slot, and real jobs behind it are not delayed by it. runJob repeats the checks at the point
// of use (a claim recovered at start-up, or an input that changed since) and rejects the same way.
import { lstat } from 'node:fs/promises';
import type { Settings } from '../config.js';
import { isJrError, messageOf } from '../errors.js';
import { dropClaim, type Claim } from '../spool/claim.js';
import { publishResult } from './publish-result.js';
import { checkInputFile, checkJobImage } from './validate.js';

export interface Prescreened {
  /** Path of the published NAME.json. */
  file: string;
  reason: string;
}

/**
 * Check the claimed input without reading more than its first 4 KiB. Runnable (or not decided
 * here, e.g. .img.xz content, or an I/O error): null, and the claim is left for the scheduler.
 * Not runnable: the rejection is published to failed/, the claim dropped, and its status returned.
 */
export async function prescreenClaim(s: Settings, c: Claim, version: string): Promise<Prescreened | null> {
  let reason: string;
  try {
    // The content of an .img.xz is only known after decompressing it: that is the job's run.
    if (c.lease.compressed) await checkInputFile(c.input, Number.MAX_SAFE_INTEGER);
    else await checkJobImage(c.input, s.maxImageSize);
    return null;
  } catch (e) {
    if (!isJrError(e, 'JR_E_INPUT')) return null;
    reason = messageOf(e);
  }
  const bytes = await lstat(c.input).then((st) => st.size, () => null);
  const file = await publishResult(
    { claim: c, target: s.failed, preset: s.compressPreset, version, step: (_name, fn) => fn() },
    { status: 'rejected', exitCode: null, reason, publishWork: false },
    // Not hashed: the evidence is published as submitted, for anyone to hash who needs it.
    { timings: { boot: null, run: null, compress: null }, input: { bytes, sha256: null }, base: null, vm: null },
  );
  await dropClaim(c.dir);
  return { file, reason };
}
