// mountImage/unmountImage against real small images: loop, partitioned loop (-P), qcow2 and vmdk through
// qemu-storage-daemon FUSE exports, fuse2fs; after unmount nothing is left (mountinfo, loops, daemons).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { run } from '../../src/proc.js';
import { mountImage, unmountImage, loadState, saveState, type MountState } from '../../src/image/mount.js';
import { isMounted } from '../../src/image/mountinfo.js';
import { busyboxTree, fsImage, leftovers, NOTHING, partitionedImage } from './mount-fixtures.js';

const isRoot = process.getuid?.() === 0;

describe.skipIf(!isRoot)('mountImage (root)', () => {
  let dir: string;
  let fsImg: string;
  let diskImg: string;
  beforeAll(async () => {
    // A comma in the directory name: qemu must get it inside JSON, not as an option separator.
    dir = await mkdtemp('/var/tmp/mount-test,x-');
    const tree = await busyboxTree(path.join(dir, 'tree'));
    fsImg = await fsImage(path.join(dir, 'fs.img'), tree);
    diskImg = await partitionedImage(path.join(dir, 'disk.img'), tree);
  });
  afterAll(async () => {
    expect(await leftovers(dir)).toEqual(NOTHING);
    await rm(dir, { recursive: true, force: true });
  });

  it('loop-mounts a whole-filesystem raw image read-write and undoes everything', async () => {
    const mp = path.join(dir, 'mnt-raw');
    const st = await mountImage({ image: fsImg, mountpoint: mp });
    expect(st.format).toBe('raw');
    expect(st.layout).toBe('filesystem');
    expect(await readFile(path.join(mp, 'etc/debian_version'), 'utf8')).toBe('12.99-fixture\n');
    await writeFile(path.join(mp, 'root/edit'), 'hello\n');
    expect((await leftovers(fsImg)).loops).toHaveLength(1);
    await unmountImage(st);
    expect(await leftovers(fsImg)).toEqual(NOTHING);
    expect(st.resources).toEqual([]);
    // The edit reached the image: read it back read-only.
    const ro = await mountImage({ image: fsImg, mountpoint: mp, readOnly: true });
    expect(await readFile(path.join(mp, 'root/edit'), 'utf8')).toBe('hello\n');
    await expect(writeFile(path.join(mp, 'x'), '')).rejects.toThrow(/read-only/i);
    await unmountImage(ro);
  });

  it('mounts each partition of a partitioned disk under MOUNTPOINT/N', async () => {
    const mp = path.join(dir, 'mnt-disk');
    const st = await mountImage({ image: diskImg, mountpoint: mp });
    expect(st.layout).toBe('partitioned');
    expect(st.partitions.map((p) => p.nr)).toEqual([1, 2]);
    expect(await readFile(path.join(mp, '2/etc/debian_version'), 'utf8')).toBe('12.99-fixture\n');
    await unmountImage(st);
    expect(await leftovers(diskImg)).toEqual(NOTHING);
    expect(await leftovers(mp)).toEqual(NOTHING);
  });

  it.each(['qcow2', 'vmdk'] as const)('mounts %s through a qemu-storage-daemon FUSE export, then stops the daemon', async (fmt) => {
    const img = path.join(dir, `fs.${fmt}`);
    await run('qemu-img', ['convert', '-O', fmt, fsImg, img]);
    const mp = path.join(dir, `mnt-${fmt}`);
    const stateFile = path.join(dir, `${fmt}.state.json`);
    const st = await mountImage({ image: img, mountpoint: mp, exportFile: path.join(dir, `${fmt}.raw`) }, (s) => saveState(stateFile, s));
    expect(st.format).toBe(fmt);
    expect(st.resources.map((r) => r.kind)).toEqual(['dir', 'qsd', 'loop', 'mount']);
    expect((await leftovers(img)).procs).toHaveLength(1);
    expect(await readFile(path.join(mp, 'etc/debian_version'), 'utf8')).toBe('12.99-fixture\n');
    // A fresh process can undo it from the state file alone.
    const again = (await loadState<MountState>(stateFile))!;
    await unmountImage(again, (s) => saveState(stateFile, s));
    expect(await leftovers(img)).toEqual(NOTHING);
    expect(await isMounted(path.join(dir, `${fmt}.raw`))).toBe(false);
  });

  it('mounts with fuse2fs (the no-root mode) and waits for it to exit on unmount', async () => {
    const mp = path.join(dir, 'mnt-fuse');
    const st = await mountImage({ image: fsImg, mountpoint: mp, mode: 'fuse' });
    // The comma in the path makes mountImage hand fuse2fs a comma-free alias (symlink).
    expect(st.resources.map((r) => r.kind)).toEqual(['dir', 'dir', 'symlink', 'fuse2fs']);
    expect(await readFile(path.join(mp, 'etc/debian_version'), 'utf8')).toBe('12.99-fixture\n');
    await unmountImage(st);
    expect(await leftovers(fsImg)).toEqual(NOTHING);
  });

  it('undoes a half-done mount when a step fails', async () => {
    const mp = path.join(dir, 'mnt-fail');
    const st0 = await mountImage({ image: fsImg, mountpoint: mp });
    // Mounting a second image on a mount point that is in use is refused, and leaves nothing.
    await expect(mountImage({ image: diskImg, mountpoint: mp })).rejects.toThrow(/already a mount point/);
    expect(await leftovers(diskImg)).toEqual(NOTHING);
    // A qcow2 that is not one: qemu-storage-daemon fails; the export file is cleaned up.
    const bad = path.join(dir, 'bad.qcow2');
    await writeFile(bad, 'not an image');
    await expect(mountImage({ image: bad, format: 'qcow2', mountpoint: path.join(dir, 'mnt-bad'), exportFile: path.join(dir, 'bad.raw') })).rejects.toThrow();
    expect(await leftovers(bad)).toEqual(NOTHING);
    await unmountImage(st0);
  });
});
