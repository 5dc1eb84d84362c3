// Queue entries refused before any claim (not regular files: symlinks, FIFOs, devices, directories).
// They get failed/NAME.json with status `rejected`; a link or special file is removed from the
// queue (removing a symlink never touches its target), a directory is moved aside into failed/.
import type { Stats } from 'node:fs';
import { rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Settings } from '../config.js';
import type { JobStatus } from '../job/result.js';
import type { Submission } from './names.js';
import { publish } from './publish.js';

function kindOf(st: Stats): string {
  if (st.isSymbolicLink()) return 'a symbolic link';
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isCharacterDevice()) return 'a character device';
  return 'not a regular file';
}

/** Refuse a queue entry that is not a regular file, leaving failed/NAME.json. */
export async function rejectEntry(s: Settings, sub: Submission, st: Stats, version: string): Promise<void> {
  const entry = path.join(s.queue, sub.file);
  const reason = `not a usable job image: it is ${kindOf(st)}, not a regular file`;
  const now = new Date().toISOString();
  await publish(s.failed, sub.name, {
    temps: {},
    status: (publishedAs): JobStatus => ({
      name: sub.name, id: `rejected-${Date.now().toString(36)}`, status: 'rejected', exitCode: null, reason,
      submitted: sub.file, publishedAs, attempt: 0, submittedAt: st.mtime.toISOString(), startedAt: null, finishedAt: now,
      durations: { wait: null, boot: null, run: null, compress: null }, input: { bytes: null, sha256: null },
      output: null, baseImage: null, accel: null, console: null, version,
    }),
  });
  if (st.isDirectory()) await rename(entry, path.join(s.failed, `.rejected-${Date.now().toString(36)}-dir`)).catch(() => undefined);
  else await unlink(entry).catch(() => undefined);
}
