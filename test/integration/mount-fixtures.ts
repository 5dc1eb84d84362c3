// Small real images for mount/rawmount/joot tests: a busybox root tree, an ext4 image of it, an
// MBR-partitioned disk with it in partition 2, and a leftovers check (mounts, loop devices, daemons).
import { copyFile, mkdir, open, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { run } from '../../src/proc.js';
import { mounts } from '../../src/image/mountinfo.js';
import { loopBackingFile } from '../../src/image/loop.js';
import { findProcesses } from '../../src/procfs.js';

/** A minimal root: static busybox, passwd/group, debian_version "12.99-fixture". */
export async function busyboxTree(dir: string): Promise<string> {
  for (const d of ['bin', 'etc', 'proc', 'sys', 'dev', 'tmp', 'root', 'var/tmp']) await mkdir(path.join(dir, d), { recursive: true });
  await copyFile('/bin/busybox', path.join(dir, 'bin/busybox'));
  for (const a of ['sh', 'cat', 'ls', 'id', 'echo', 'test', 'md5sum', 'grep', 'true', 'false', 'env', 'pwd', 'sleep']) {
    await symlink('busybox', path.join(dir, 'bin', a));
  }
  await writeFile(path.join(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n');
  await writeFile(path.join(dir, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
  await writeFile(path.join(dir, 'etc/debian_version'), '12.99-fixture\n');
  return dir;
}

/** An ext4 filesystem image of `tree` (sparse). */
export async function fsImage(file: string, tree: string, sizeMiB = 32): Promise<string> {
  await run('truncate', ['-s', `${sizeMiB}M`, file]);
  await run('mkfs.ext4', ['-q', '-F', '-L', 'root', '-d', tree, file]);
  return file;
}

/** Write an MBR partition table: entries of [type, startSector, sectors]. */
export async function writeMbr(file: string, parts: Array<[number, number, number]>): Promise<void> {
  const b = Buffer.alloc(512);
  parts.forEach(([type, start, count], i) => {
    const o = 446 + 16 * i;
    b[o + 4] = type;
    b.writeUInt32LE(start, o + 8);
    b.writeUInt32LE(count, o + 12);
  });
  b[510] = 0x55; b[511] = 0xaa;
  const fh = await open(file, 'r+');
  await fh.write(b, 0, 512, 0);
  await fh.close();
}

/** A 64 MiB MBR disk: partition 1 = 8 MiB empty ext4 ("boot"), partition 2 = ext4 of `tree`. */
export async function partitionedImage(file: string, tree: string): Promise<string> {
  const total = 64 * 2048; // sectors
  await run('truncate', ['-s', '64M', file]);
  await writeMbr(file, [[0x83, 2048, 8 * 2048], [0x83, 10 * 2048, total - 10 * 2048]]);
  await run('mkfs.ext4', ['-q', '-F', '-E', `offset=${2048 * 512}`, file, '8M']);
  await run('mkfs.ext4', ['-q', '-F', '-d', tree, '-E', `offset=${10 * 2048 * 512}`, file, `${(total - 10 * 2048) / 2}k`]);
  await run('truncate', ['-s', '64M', file]);
  return file;
}

/** Everything still around that mentions `fragment`: mounts, loop devices, daemons. */
export async function leftovers(fragment: string): Promise<{ mounts: string[]; loops: string[]; procs: string[] }> {
  const ms = (await mounts()).filter((m) => m.mountpoint.includes(fragment) || m.source.includes(fragment)).map((m) => m.mountpoint);
  const loops: string[] = [];
  for (const e of await readdir('/sys/block')) {
    if (!e.startsWith('loop')) continue;
    const b = await loopBackingFile(`/dev/${e}`);
    if (b?.includes(fragment)) loops.push(`/dev/${e} -> ${b}`);
  }
  const procs: string[] = [];
  for (const pid of await findProcesses((a) => a.some((x) => x.includes(fragment)) && !a.some((x) => x.includes('vitest')))) {
    procs.push(`${pid}: ${(await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).replace(/\0/g, ' ')}`);
  }
  return { mounts: ms, loops, procs };
}

export const NOTHING = { mounts: [], loops: [], procs: [] };
