// The manifest's `disk` (issue 11): give the job disk at least that much free space before boot.
// The work image is our own copy, so making the file longer is safe; the filesystem on it is the
// job's and hostile, so what reads or rewrites it (debugfs, e2fsck, resize2fs) runs in the confined
// sandbox (src/image/confine.ts, here with the image bound read-write), never as us.
import { open } from 'node:fs/promises';
import { JrError } from '../errors.js';
import { openConfined } from '../image/confine.js';
import { DebugfsImage } from '../image/debugfs.js';

/** What growing did: the free space (df's Avail) and filesystem size, before and after, in bytes. */
export interface DiskGrowth { freeBefore: number; freeAfter: number; bytesBefore: number; bytesAfter: number }

const MiB = 1024 * 1024;

/** Free space on the image's filesystem as df's Avail counts it: free blocks less the reserved ones. */
export async function freeSpace(image: string): Promise<{ free: number; blocks: number; blockSize: number }> {
  const fs = await DebugfsImage.open(image);
  try {
    const sb = await fs.superblock();
    const free = Math.max(0, sb.freeBlocks - sb.reservedBlocks);
    return { free: free * sb.blockSize, blocks: sb.blockCount, blockSize: sb.blockSize };
  } finally {
    await fs.close();
  }
}

/**
 * Grow `image` so its filesystem has at least `want` bytes free; null when it already has. Throws
 * JR_E_INPUT when the job's filesystem cannot be checked or grown (a broken or hostile image).
 */
export async function growJobDisk(image: string, want: number): Promise<DiskGrowth | null> {
  const before = await freeSpace(image);
  if (before.free >= want) return null;
  const bytesBefore = before.blocks * before.blockSize;
  let now = before;
  // New block groups carry their own metadata (inode tables, bitmaps: ~2% at ext4's defaults), so
  // ask for the deficit plus a margin, then check and top up once if the estimate fell short.
  for (let round = 0; round < 2 && now.free < want; round++) {
    const target = Math.ceil((now.blocks * now.blockSize + (want - now.free) * 1.05 + 32 * MiB) / MiB) * MiB;
    const fh = await open(image, 'r+');
    try { await fh.truncate(target); } finally { await fh.close(); }
    await resizeConfined(image);
    now = await freeSpace(image);
  }
  if (now.free < want) throw new JrError('JR_E_INTERNAL', `the job disk has ${now.free} bytes free after growing it, short of the ${want} asked for`);
  return { freeBefore: before.free, freeAfter: now.free, bytesBefore, bytesAfter: now.blocks * now.blockSize };
}

/** e2fsck -f (resize2fs insists on a checked filesystem) then resize2fs to the file's size, both confined. */
async function resizeConfined(image: string): Promise<void> {
  const box = await openConfined(image, { writable: true });
  try {
    const limits = { timeoutMs: 300_000, cpuSeconds: 240 };
    const fsck = await box.run('e2fsck', ['-f', '-y', box.path], { limits });
    // 0: clean, 1: errors fixed, 2: fixed (reboot advised: meaningless here); 4 and up: not fixed.
    if (fsck.exitCode === null || fsck.exitCode >= 4) {
      throw new JrError('JR_E_INPUT', `the job image's filesystem has errors e2fsck cannot fix (exit ${fsck.exitCode}), so it cannot be grown: ${fsck.stderr.trim().slice(-300)}`);
    }
    const rs = await box.run('resize2fs', [box.path], { limits });
    if (rs.exitCode !== 0) throw new JrError('JR_E_INPUT', `resize2fs could not grow the job image's filesystem (exit ${rs.exitCode}): ${rs.stderr.trim().slice(-300)}`);
  } finally {
    await box.close();
  }
}
