// Host-side checks on a job image before any VM sees it. Pure reads of a few bytes through a
// no-follow handle: untrusted images never reach the host kernel's filesystem code or a shell.
import { open, type FileHandle } from 'node:fs/promises';
import { constants, type Stats } from 'node:fs';
import { JrError } from '../errors.js';
import { fileKind } from '../fsutil.js';
import { formatBytes } from '../units.js';

export interface ImageCheck {
  bytes: number;
}

const EXT_MAGIC_OFFSET = 1080; // superblock at 1024 + s_magic at 56
const MIN_EXT_BYTES = 64 * 1024;

/** Why a header is not an ext2/3/4 filesystem, naming the format when we recognise it. */
export function describeForeignHeader(head: Buffer): string | null {
  const at = (s: string, off = 0): boolean => head.subarray(off, off + s.length).toString('latin1') === s;
  if (at('QFI\xfb')) return 'it is a qcow2 image, not a raw filesystem image (qcow2 may name host files as backing; refused)';
  if (at('KDMV')) return 'it is a VMDK sparse image, not a raw filesystem image';
  if (at('# Disk DescriptorFile')) return 'it is a VMDK descriptor (it names other files), not a raw filesystem image';
  if (at('conectix')) return 'it is a VHD image, not a raw filesystem image';
  if (at('<<< Oracle VM VirtualBox Disk Image >>>')) return 'it is a VirtualBox VDI image, not a raw filesystem image';
  if (at('\xfd7zXZ\x00')) return 'it is xz-compressed data: name it NAME.img.xz';
  if (at('\x1f\x8b')) return 'it is gzip-compressed data, which is not accepted (use .img.xz)';
  if (head.length > 0x1fe + 2 && head[0x1fe] === 0x55 && head[0x1ff] === 0xaa) {
    return 'it is a partitioned disk (MBR signature), not a single filesystem image';
  }
  return null;
}

/**
 * Check that `file` is a regular file (not a link, device or FIFO), non-empty and within `maxBytes`,
 * by one no-follow open and fstat: nothing is read, so a huge sparse file costs nothing to refuse.
 * Throws JR_E_INPUT with a specific reason; returns the size.
 */
export async function checkInputFile(file: string, maxBytes: number): Promise<ImageCheck> {
  const fh = await openNoFollow(file);
  try {
    return { bytes: checkStat(await fh.stat(), maxBytes) };
  } finally {
    await fh.close();
  }
}

/**
 * Check that `file` is a regular file (not a link, device or FIFO), non-empty, within `maxBytes`,
 * and starts like an ext2/3/4 filesystem. Throws JR_E_INPUT with a specific reason.
 */
export async function checkJobImage(file: string, maxBytes: number): Promise<ImageCheck> {
  const fh = await openNoFollow(file);
  try {
    const size = checkStat(await fh.stat(), maxBytes);
    if (size < MIN_EXT_BYTES) throw new JrError('JR_E_INPUT', sizeProblem(size, false, maxBytes)!);
    const head = Buffer.alloc(4096);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    const h = head.subarray(0, bytesRead);
    const foreign = describeForeignHeader(h);
    if (foreign) throw new JrError('JR_E_INPUT', `not a usable job image: ${foreign}`);
    if (h.length < EXT_MAGIC_OFFSET + 2 || h.readUInt16LE(EXT_MAGIC_OFFSET) !== 0xef53) {
      throw new JrError('JR_E_INPUT', 'not a usable job image: no ext2/3/4 superblock (make images with scripts/mkimage)');
    }
    return { bytes: size };
  } finally {
    await fh.close();
  }
}

async function openNoFollow(file: string): Promise<FileHandle> {
  try {
    // O_NONBLOCK: opening a FIFO must not hang us; O_NOFOLLOW: a symlink is refused, not followed.
    return await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ELOOP' ? 'it is a symbolic link' : code === 'EACCES' ? 'it cannot be read (permission denied)'
      : code === 'ENOENT' ? 'it does not exist' : `it cannot be opened (${code})`;
    throw new JrError('JR_E_INPUT', `not a usable job image: ${why}`, { cause: e });
  }
}

/**
 * Why a regular file of `size` bytes cannot be a job, judged from its size alone (no read): empty,
 * over `maxBytes` (an uncompressed image; an .img.xz's content size is known only once decoded), or
 * too small to hold an ext2/3/4 filesystem. null when the size allows a job. The same reasons as
 * checkInputFile / checkJobImage give, so a bulk rejection at intake reads like any other.
 */
export function sizeProblem(size: number, compressed: boolean, maxBytes: number): string | null {
  if (size === 0) return 'not a usable job image: it is empty (0 bytes)';
  if (compressed) return null;
  if (size > maxBytes) return `not a usable job image: ${formatBytes(size)} exceeds the ${formatBytes(maxBytes)} limit (max-image-size)`;
  if (size < MIN_EXT_BYTES) return `not a usable job image: ${size} bytes is too small to hold an ext2/3/4 filesystem`;
  return null;
}

function checkStat(st: Stats, maxBytes: number): number {
  if (!st.isFile()) throw new JrError('JR_E_INPUT', `not a usable job image: it is not a regular file (${fileKind(st)})`);
  if (st.size === 0) throw new JrError('JR_E_INPUT', sizeProblem(0, false, maxBytes)!);
  if (st.size > maxBytes) throw new JrError('JR_E_INPUT', sizeProblem(st.size, false, maxBytes)!);
  return st.size;
}
