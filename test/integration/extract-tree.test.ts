// The image-reading API (src/image/extract-tree.ts) on honest images: every kind of entry comes out
// as it went in (contents, holes, hard links, fast and slow symlinks, inline data, block-mapped
// ext2 files with indirect blocks), and readImageFile answers a manifest-sized read.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, open, readFile, readdir, readlink, rm, symlink, link, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { extractTree, imageHas, openImage, readImageFile } from '../../src/image/extract-tree.js';
import { tarTree } from '../../src/image/tar-tree.js';
import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { isJrError } from '../../src/errors.js';
import { runProc, scratch } from '../helpers.js';

const exec = promisify(execFile);
const ENV = { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` };
const haveBwrap = (await runProc('sh', ['-c', 'command -v bwrap && command -v prlimit'])).code === 0;

describe.skipIf(!haveBwrap)('reading files out of ext images (confined)', () => {
  let dir: string;
  const big = randomBytes(3 * 1024 * 1024 + 123);
  const tail = randomBytes(5000);
  const longTarget = 'x/'.repeat(60) + 'target'; // > 60 bytes: a slow symlink, stored in a block
  beforeAll(async () => {
    dir = await scratch('extract-tree');
    const t = path.join(dir, 'tree');
    await mkdir(path.join(t, 'output/sub/deeper'), { recursive: true });
    await writeFile(path.join(t, 'output/big.bin'), big);
    await writeFile(path.join(t, 'output/empty'), '');
    await writeFile(path.join(t, 'output/sub/small.txt'), 'small\n');
    const fh = await open(path.join(t, 'output/sparse'), 'w'); // 100 MiB apparent, 5000 bytes of data at 64 MiB
    await fh.write(tail, 0, tail.length, 64 * 1024 * 1024);
    await fh.truncate(100 * 1024 * 1024);
    await fh.close();
    await link(path.join(t, 'output/sub/small.txt'), path.join(t, 'output/hardlink.txt'));
    await symlink('../big.bin', path.join(t, 'output/sub/fast-link'));
    await symlink(longTarget, path.join(t, 'output/slow-link'));
    await chmod(path.join(t, 'output/sub/deeper'), 0o750);
    await chmod(path.join(t, 'output/sub/small.txt'), 0o640);
    await exec('mkfifo', [path.join(t, 'output/fifo')]);
    await writeFile(path.join(t, 'jobrunner.json'), '{"deps":["hello"]}\n');
    for (const [name, args] of [['ext4', ['-t', 'ext4']], ['ext2', ['-t', 'ext2']], ['inline', ['-t', 'ext4', '-O', 'inline_data', '-I', '512']]] as const) {
      await exec('mke2fs', ['-q', '-F', ...args, '-d', t, '-E', 'root_owner=0:0', path.join(dir, `${name}.img`), '64M'], { env: ENV });
    }
  });
  afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

  for (const kind of ['ext4', 'ext2', 'inline']) {
    it(`extracts /output of an ${kind} image faithfully`, async () => {
      const out = path.join(dir, `out-${kind}`);
      await mkdir(out);
      const s = await extractTree(path.join(dir, `${kind}.img`), '/output', out);
      const o = path.join(out, 'output');
      expect((await readdir(o)).sort()).toEqual(['big.bin', 'empty', 'fifo', 'hardlink.txt', 'slow-link', 'sparse', 'sub'].filter((n) => n !== 'fifo'));
      expect(s.skipped).toEqual(['/output/fifo']);
      expect((await readFile(path.join(o, 'big.bin'))).equals(big)).toBe(true);
      expect(await readFile(path.join(o, 'empty'), 'utf8')).toBe('');
      expect(await readFile(path.join(o, 'sub/small.txt'), 'utf8')).toBe('small\n');
      const sp = await lstat(path.join(o, 'sparse'));
      // (mke2fs -d with inline_data ends the file at its last data block: the image itself says 64 MiB + 5 KiB.)
      expect(sp.size).toBe(kind === 'inline' ? 64 * 1024 * 1024 + 5120 : 100 * 1024 * 1024);
      expect(sp.blocks * 512).toBeLessThan(1024 * 1024); // holes stayed holes
      const spData = await readFile(path.join(o, 'sparse'));
      expect(spData.subarray(64 * 1024 * 1024, 64 * 1024 * 1024 + tail.length).equals(tail)).toBe(true);
      expect(spData.subarray(0, 64 * 1024 * 1024).every((b) => b === 0)).toBe(true);
      expect((await lstat(path.join(o, 'hardlink.txt'))).ino).toBe((await lstat(path.join(o, 'sub/small.txt'))).ino);
      expect(await readlink(path.join(o, 'sub/fast-link'))).toBe('../big.bin');
      expect(await readlink(path.join(o, 'slow-link'))).toBe(longTarget);
      expect((await lstat(path.join(o, 'sub/deeper'))).mode & 0o777).toBe(0o750);
      expect((await lstat(path.join(o, 'sub/small.txt'))).mode & 0o777).toBe(0o640);
      expect(s.written).toBeLessThan(big.length + 64 * 1024 * 2); // the sparse file's holes were not written
    });
  }

  it('reads one small file (a manifest), answers null for a missing one, and refuses past maxBytes or a directory', async () => {
    const img = await openImage(path.join(dir, 'ext4.img'));
    try {
      expect((await readImageFile(img, '/jobrunner.json', { maxBytes: 65536 }))!.toString()).toBe('{"deps":["hello"]}\n');
      expect(await readImageFile(img, '/nope.json', { maxBytes: 65536 })).toBeNull();
      expect(await imageHas(img, '/output/sub')).toBe(true);
      expect(await imageHas(img, '/output/none')).toBe(false);
      const tooBig = await readImageFile(img, '/output/big.bin', { maxBytes: 1024 }).catch((e: unknown) => e);
      expect(isJrError(tooBig, 'JR_E_INPUT') && tooBig.message).toMatch(/3145851 bytes, more than the 1024 allowed/);
      const isDir = await readImageFile(img, '/output', { maxBytes: 1024 }).catch((e: unknown) => e);
      expect(isJrError(isDir, 'JR_E_INPUT') && isDir.message).toMatch(/not a regular file/);
      expect((await readImageFile(img, '/output/big.bin', { maxBytes: 8 << 20 }))!.equals(big)).toBe(true);
    } finally {
      await img.close();
    }
    const inline = await readImageFile(path.join(dir, 'inline.img'), '/jobrunner.json', { maxBytes: 65536 });
    expect(inline!.toString()).toBe('{"deps":["hello"]}\n');
  });

  it('streams /output as a tar with sparse members, and leaves no temporary directory', async () => {
    const tarFile = path.join(dir, 'output.tar');
    const tmp = path.join(dir, 'tar-tmp');
    await mkdir(tmp);
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = tmp;
    try {
      await pipeline(await tarTree(path.join(dir, 'ext4.img'), '/output'), createWriteStream(tarFile));
      await expect(tarTree(path.join(dir, 'ext4.img'), '/output', { maxFiles: 2 })).rejects.toThrow(/more than 2 entries/);
    } finally {
      if (saved === undefined) delete process.env.TMPDIR; else process.env.TMPDIR = saved;
    }
    for (let i = 0; i < 50 && (await readdir(tmp)).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await readdir(tmp)).toEqual([]);
    expect((await lstat(tarFile)).size).toBeLessThan(big.length + (1 << 20)); // the 100 MiB sparse file is not written out
    const list = (await exec('tar', ['-tvf', tarFile])).stdout;
    expect(list).toMatch(/0\/0\s+104857600 .* output\/sparse$/m);
    expect(list).toMatch(/output\/sub\/fast-link -> \.\.\/big\.bin$/m);
    const x = path.join(dir, 'from-tar');
    await mkdir(x);
    await exec('tar', ['-xf', tarFile, '-C', x]);
    expect((await readFile(path.join(x, 'output/big.bin'))).equals(big)).toBe(true);
  });

  it('honours caps given by the caller', async () => {
    const out = path.join(dir, 'out-capped');
    await mkdir(out);
    await expect(extractTree(path.join(dir, 'ext4.img'), '/output', out, { maxFiles: 3 })).rejects.toThrow(/more than 3 entries below \/output/);
    await expect(extractTree(path.join(dir, 'ext4.img'), '/output/sub', out, { maxDepth: 0 })).rejects.toThrow(/deeper than 0 levels/);
    await expect(extractTree(path.join(dir, 'ext4.img'), '/output/big.bin', out, { maxBytes: 1000 })).rejects.toThrow(/more than 1000 bytes/);
    await expect(extractTree(path.join(dir, 'ext4.img'), '/missing', out)).rejects.toMatchObject({ code: 'JR_E_USAGE' });
  });
});
