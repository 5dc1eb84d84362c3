import { mkdir, mkdtemp, symlink, writeFile, truncate } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkJobImage } from '../../../src/job/validate.js';

const GiB = 1024 ** 3;

describe('host-side job image checks', async () => {
  const d = await mkdtemp(path.join(os.tmpdir(), 'validate-'));
  const good = path.join(d, 'good.img');
  execFileSync('mke2fs', ['-q', '-F', '-t', 'ext4', good, '8M'], { env: { PATH: `${process.env.PATH}:/usr/sbin:/sbin` } });

  it('accepts a real ext4 image', async () => {
    expect((await checkJobImage(good, GiB)).bytes).toBe(8 * 1024 * 1024);
  });

  it('refuses empty, junk, oversized, symlinked, directory and foreign-format inputs with specific reasons', async () => {
    await writeFile(path.join(d, 'empty.img'), '');
    await expect(checkJobImage(path.join(d, 'empty.img'), GiB)).rejects.toThrow(/empty/);
    await writeFile(path.join(d, 'junk.img'), Buffer.alloc(1 << 20, 0x41));
    await expect(checkJobImage(path.join(d, 'junk.img'), GiB)).rejects.toThrow(/no ext2\/3\/4 superblock/);
    await writeFile(path.join(d, 'huge.img'), '');
    await truncate(path.join(d, 'huge.img'), 2 * GiB);
    await expect(checkJobImage(path.join(d, 'huge.img'), GiB)).rejects.toThrow(/exceeds the 1.0 GiB limit/);
    await symlink(good, path.join(d, 'link.img'));
    await expect(checkJobImage(path.join(d, 'link.img'), GiB)).rejects.toThrow(/symbolic link/);
    await mkdir(path.join(d, 'dir.img'));
    await expect(checkJobImage(path.join(d, 'dir.img'), GiB)).rejects.toThrow(/directory/);
    const qcow = Buffer.alloc(1 << 20); qcow.write('QFI\xfb', 0, 'latin1');
    await writeFile(path.join(d, 'q.img'), qcow);
    await expect(checkJobImage(path.join(d, 'q.img'), GiB)).rejects.toThrow(/qcow2/);
    const vmdk = Buffer.alloc(1 << 20); vmdk.write('# Disk DescriptorFile\n', 0);
    await writeFile(path.join(d, 'v.img'), vmdk);
    await expect(checkJobImage(path.join(d, 'v.img'), GiB)).rejects.toThrow(/VMDK descriptor/);
  });
});
