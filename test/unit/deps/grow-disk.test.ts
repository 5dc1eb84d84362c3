// The manifest's disk, host side (no qemu): growJobDisk makes a real ext4 image's filesystem
// have at least the free space asked for (through the confined e2fsck + resize2fs), leaves the
// files on it alone, does nothing when there is already enough, and refuses a non-filesystem.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { freeSpace, growJobDisk } from '../../../src/deps/grow-disk.js';
import { readImageFile } from '../../../src/image/extract-tree.js';
import { runProc, scratch } from '../../helpers.js';

const MiB = 1024 * 1024;

async function image(name: string, size: string): Promise<string> {
  const dir = await scratch(`grow-${name}`);
  await mkdir(path.join(dir, 'tree'));
  await writeFile(path.join(dir, 'tree', 'kept.txt'), 'still here\n');
  const img = path.join(dir, 'job.img');
  const r = await runProc('mkfs.ext4', ['-q', '-F', '-d', path.join(dir, 'tree'), img, size]);
  if (r.code !== 0) throw new Error(r.stderr);
  return img;
}

describe('growJobDisk', () => {
  it('grows a 64M image to at least 1G free, fsck-clean, with its files kept', async () => {
    const img = await image('grow', '64M');
    expect((await freeSpace(img)).free).toBeLessThan(64 * MiB);
    const g = await growJobDisk(img, 1024 * MiB);
    expect(g).not.toBeNull();
    expect(g!.freeAfter).toBeGreaterThanOrEqual(1024 * MiB);
    expect(g!.bytesAfter).toBeGreaterThan(g!.bytesBefore);
    expect((await freeSpace(img)).free).toBe(g!.freeAfter);
    const fsck = await runProc('e2fsck', ['-f', '-n', img]);
    expect(fsck.code, fsck.stdout + fsck.stderr).toBe(0);
    expect((await readImageFile(img, '/kept.txt', { maxBytes: 100 }))?.toString()).toBe('still here\n');
    expect(await growJobDisk(img, 1024 * MiB)).toBeNull(); // already enough: nothing done
  }, 120_000);

  it('does nothing to an image that already has the space', async () => {
    const img = await image('enough', '128M');
    expect(await growJobDisk(img, 16 * MiB)).toBeNull();
  }, 60_000);

  it('refuses an image that is not a filesystem with JR_E_INPUT', async () => {
    const dir = await scratch('grow-junk');
    const img = path.join(dir, 'junk.img');
    await writeFile(img, Buffer.alloc(8 * MiB, 0x5a));
    await expect(growJobDisk(img, 64 * MiB)).rejects.toMatchObject({ code: 'JR_E_INPUT' });
  }, 60_000);
});
