// Hostile inputs, made for real: job images whose construir misbehaves, images that lie about
// their format, broken .xz files, special files, and a fake qemu whose behaviour a job image picks.
import { execFile } from 'node:child_process';
import { copyFile, open, readFile, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { REPO, jobTree, runProc } from '../../helpers.js';

const exec = promisify(execFile);

/** A job image from a /bin/sh script plus extra files (path -> content) with the real mkimage. */
export async function job(work: string, name: string, script: string, files: Record<string, string> = {}, extra = '16M'): Promise<string> {
  const tree = await jobTree(path.join(work, `${name}.tree`), script, files);
  const out = path.join(work, `${name}.img`);
  const r = await runProc(path.join(REPO, 'scripts', 'mkimage'), [tree, '-o', out, '--extra', extra, '--force']);
  if (r.code !== 0) throw new Error(`mkimage ${name} failed: ${r.stderr}`);
  return out;
}

/** xz-compress `src` to `out` with the system xz. */
export async function xz(src: string, out: string): Promise<string> {
  await exec('sh', ['-c', 'xz -T0 -1 -c -- "$1" > "$2"', 'sh', src, out]);
  return out;
}

/** A qcow2 image whose header names `backing` (a host file) as its backing file; qemu-img -u never opens it. */
export async function qcow2Naming(out: string, backing: string): Promise<string> {
  await exec('qemu-img', ['create', '-q', '-u', '-f', 'qcow2', '-b', backing, '-F', 'raw', out, '64M']);
  return out;
}

/** A VMDK descriptor whose only extent is the host file `extent`. */
export async function vmdkNaming(out: string, extent: string): Promise<string> {
  await writeFile(out, [
    '# Disk DescriptorFile', 'version=1', 'CID=fffffffe', 'parentCID=ffffffff', 'createType="monolithicFlat"', '',
    `RW 131072 FLAT "${extent}" 0`, '', 'ddb.virtualHWVersion = "4"', '',
  ].join('\n').padEnd(70_000, '\n'));
  return out;
}

/** A real ext image cut to its first `bytes`: the host sees a valid superblock, the guest cannot mount it. */
export async function truncatedCopy(src: string, out: string, bytes: number): Promise<string> {
  await copyFile(src, out);
  await truncate(out, bytes);
  return out;
}

/** Copy of an .xz with bytes in its middle flipped (checksums and LZMA state break). */
export async function corruptCopy(src: string, out: string): Promise<string> {
  const b = await readFile(src);
  for (let i = Math.floor(b.length / 2); i < Math.floor(b.length / 2) + 64 && i < b.length - 32; i++) b[i] = b[i]! ^ 0x5a;
  await writeFile(out, b);
  return out;
}

/** The first half of a file. */
export async function halfCopy(src: string, out: string): Promise<string> {
  const b = await readFile(src);
  await writeFile(out, b.subarray(0, Math.floor(b.length / 2)));
  return out;
}

/** An .xz of `bytes` zeros (tiny on disk, large when decompressed). */
export async function zeroBomb(out: string, bytes: number): Promise<string> {
  await exec('sh', ['-c', `head -c ${bytes} /dev/zero | xz -T0 -1 -c > "$1"`, 'sh', out]);
  return out;
}

/** A unix socket file at `p` (bound and left behind by a short-lived process). */
export async function unixSocket(p: string): Promise<void> {
  await exec('python3', ['-c', 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])', p]);
}

/** `size` bytes of random data, base64 (compressible, so xz has real work to do). */
export async function base64Data(bytes: number): Promise<string> {
  const fh = await open('/dev/urandom', 'r');
  try {
    const b = Buffer.alloc(bytes);
    await fh.read(b, 0, bytes, null);
    return b.toString('base64').replace(/(.{200})/g, '$1\n');
  } finally {
    await fh.close();
  }
}

/** First bytes of a file. */
export async function head(file: string, n: number): Promise<Buffer> {
  const fh = await open(file, 'r');
  try {
    const b = Buffer.alloc(n);
    const { bytesRead } = await fh.read(b, 0, n, 0);
    return b.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** The fake qemu (test/lib/fake-qemu.ts, shared with the no-qemu service tier). */
export { fakeQemu } from '../../lib/fake-qemu.js';
