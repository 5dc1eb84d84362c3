// Claimed inputs that are not plain files of ours are refused before anything opens them. The
// check runs on the claimed name (queue/.running/<id>/input.*, a directory only we write), so a
// submitter cannot swap the entry between the check and the use. The entry is never opened,
// followed, written or published as evidence: a symlink or device node in failed/ would point at
// host files, and a hard link there would hand a host file's content to whoever reads results.
// Each rejection leaves failed/NAME.json with status `rejected` and a reason naming the problem.
import type { Stats } from 'node:fs';
import { lstat, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Settings } from '../config.js';
import { fileKind } from '../fsutil.js';
import { dropClaim, type Claim } from './claim.js';
import { publish } from './publish.js';
import { statusRecord } from './record.js';
import { Semaphore } from '../semaphore.js';

/** Why an entry (from lstat) cannot be a job image, or null when it is a plain single-link file. */
export function entryProblem(st: Stats): string | null {
  if (!st.isFile()) return `not a usable job image: it is ${fileKind(st)}, not a regular file`;
  // A second link means the same inode has a name outside our claim (possibly a host file).
  if (st.nlink > 1) return `not a usable job image: it has ${st.nlink} hard links (submit a copy, not a link)`;
  return null;
}

// Screening is serialised: two hard links to one file claimed at once must not both be unlinked.
const one = new Semaphore(1);

/**
 * Screen the claimed input (lstat only). Fine: null. Otherwise publish the rejection, dispose of
 * the entry without reading it, drop the claim and return the status file path.
 */
export async function screenClaimed(s: Settings, c: Claim, version: string): Promise<string | null> {
  // (house-intake) Fast path, unserialised: a plain single-link file stays one (only we hold names
  // in the claim directory), so a flood of plain files does not pass this check one at a time.
  const first = await lstat(c.input).catch(() => null);
  if (!first || !entryProblem(first)) return null;
  return one.run(async () => {
    const st = await lstat(c.input).catch(() => null);
    if (!st) return null;
    const problem = entryProblem(st);
    if (!problem) return null;
    const aside = path.join(s.failed, `.rejected-${c.lease.id}.dir`);
    const reason = `${problem}; ${disposal(st, aside)}`;
    const file = await publishRejection(s, c, reason, st, version);
    await dispose(c.input, st, aside);
    await dropClaim(c.dir);
    return file;
  });
}

function disposal(st: Stats, aside: string): string {
  if (st.isDirectory()) return `moved aside, untouched, to ${aside}`;
  if (st.isSymbolicLink()) return 'the link was removed from the queue, never followed; its target is untouched';
  if (st.isFile()) return 'this name was unlinked from the queue; the file itself and its other names are untouched';
  return 'it was removed from the queue without being opened';
}

/** Remove our name for the entry; a directory (which may hold someone's files) is moved aside instead. */
async function dispose(input: string, st: Stats, aside: string): Promise<void> {
  if (st.isDirectory()) await rename(input, aside);
  else await unlink(input);
}

async function publishRejection(s: Settings, c: Claim, reason: string, st: Stats, version: string): Promise<string> {
  const now = new Date().toISOString();
  const name = await publish(s.failed, c.lease.name, {
    temps: {},
    status: (publishedAs) => statusRecord(c.lease, publishedAs, {
      status: 'rejected', exitCode: null, reason, version, startedAt: null,
      input: { bytes: st.isFile() ? st.size : null, sha256: null },
    }, now),
  });
  return path.join(s.failed, `${name}.json`);
}
