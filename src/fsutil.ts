// Small durable-filesystem helpers: fsync of files and directories, atomic JSON writes,
// sparse copies. Used by the spool (claim, lease, publish).
import { lstat, open, readFile, rename, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { run } from './proc.js';

/** fsync a file or directory by path. */
export async function fsyncPath(p: string): Promise<void> {
  const fh = await open(p, 'r');
  try { await fh.sync(); } finally { await fh.close(); }
}

/**
 * A fresh temp name in `dir` for `label`: `.<label>.<pid>.<time>.<random>.<suffix>`. Unique per
 * call, not per millisecond: two jobs with the same result name can publish at the same instant,
 * and a shared temp name once made one of them fail and delete the other's file. A dotfile, so the
 * queue ignores it; start-up sweeps of done/ and failed/ remove leftover `.*.tmp`.
 */
export function tempName(dir: string, label: string, suffix = 'tmp'): string {
  return path.join(dir, `.${label}.${process.pid}.${Date.now().toString(36)}.${randomBytes(6).toString('hex')}.${suffix}`);
}

/** Write `data` to `file` atomically: temp name in the same directory, fsync, rename, fsync dir. */
export async function writeFileAtomic(file: string, data: string | Buffer): Promise<void> {
  const tmp = tempName(path.dirname(file), path.basename(file));
  try {
    await writeFile(tmp, data, { mode: 0o644 });
    await fsyncPath(tmp);
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  await fsyncPath(path.dirname(file));
}

/** Copy a (possibly sparse) file keeping its holes: cp --sparse=always, reflink when possible. */
export async function copySparse(src: string, dst: string): Promise<void> {
  await run('cp', ['--sparse=always', '--reflink=auto', '--no-dereference', '--', src, dst]);
}

/** Read `len` bytes at `pos` into the start of `buf`, as many calls as it takes; returns how many
 *  were read, fewer than `len` only at end of file (the caller says what that means). */
export async function readFully(fh: FileHandle, buf: Buffer, len: number, pos: number): Promise<number> {
  let got = 0;
  while (got < len) {
    const { bytesRead } = await fh.read(buf, got, len - got, pos + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got;
}

/**
 * The JSON value in `file`, or null when the file is missing, unreadable or not (yet) whole JSON:
 * for readers of records another process may be writing or may have left torn. The caller checks
 * the value's shape.
 */
export async function readJson(file: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as unknown;
  } catch {
    return null;
  }
}

/** True when a directory entry exists at `p` (links are not followed: a dangling link exists). */
export function entryExists(p: string): Promise<boolean> {
  return lstat(p).then(() => true, () => false);
}

/** What kind of file system object `st` (from lstat or fstat) describes, for refusal messages. */
export function fileKind(st: {
  isSymbolicLink(): boolean; isDirectory(): boolean; isFIFO(): boolean; isSocket(): boolean; isBlockDevice(): boolean; isCharacterDevice(): boolean;
}): string {
  if (st.isSymbolicLink()) return 'a symbolic link';
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isCharacterDevice()) return 'a character device';
  return 'not a regular file';
}
