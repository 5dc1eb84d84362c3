// ext2/3/4 images through e2fsprogs userspace only: mke2fs -d builds an image from a directory
// (no root, no mount); debugfs reads files out. Neither hands image bytes to the host kernel.
import { lstat, readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { JrError } from '../errors.js';
import { run } from '../proc.js';

export type ExtFs = 'ext2' | 'ext4';

/** Bytes a tree will need inside an ext filesystem: 4 KiB blocks per file plus an inode-ish per entry. */
export async function treeSize(dir: string): Promise<{ bytes: number; entries: number }> {
  let bytes = 0;
  let entries = 0;
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      const st = await lstat(p);
      entries++;
      bytes += 4096 + Math.ceil(st.size / 4096) * 4096;
      if (st.isDirectory()) await walk(p);
    }
  };
  await walk(dir);
  return { bytes, entries };
}

/**
 * Build a sparse ext image at `out` (must not exist) holding the tree `dir`. The file is new, so
 * it reads as zeros: assume_storage_prezeroed skips writing zeroed inode tables and journal.
 */
export async function makeExtImage(dir: string, out: string, sizeBytes: number, fs: ExtFs, label = 'job'): Promise<void> {
  const sizeKiB = Math.ceil(sizeBytes / 1024);
  const args = ['-q', '-F', '-t', fs, '-L', label, '-d', dir,
    '-E', 'root_owner=0:0,assume_storage_prezeroed=1', out, `${sizeKiB}k`];
  try {
    await run('mke2fs', args, { env: { PATH: `${process.env.PATH}:/usr/sbin:/sbin`, MKE2FS_CONFIG: '/etc/mke2fs.conf' } });
  } catch (e) {
    await rm(out, { force: true });
    throw new JrError('JR_E_PROCESS', `mke2fs could not build the image: ${(e as Error).message}`, { cause: e });
  }
}

export interface DirEntry {
  name: string;
  mode: number;
  isDir: boolean;
  size: number;
}

/** Run one or more debugfs requests against an image opened read-only; returns stdout. */
async function debugfs(image: string, request: string): Promise<{ stdout: string; stderr: string }> {
  const r = await run('debugfs', ['-R', request, image], {
    env: { PATH: `${process.env.PATH}:/usr/sbin:/sbin` }, reject: false, maxBuffer: 256 * 1024 * 1024,
  });
  if (r.exitCode !== 0) throw new JrError('JR_E_PROCESS', `debugfs failed on ${image}: ${r.stderr.trim()}`);
  return r;
}

/** debugfs takes paths inside its request string: refuse characters its parser would treat specially. */
function checkImagePath(p: string): void {
  if (!p.startsWith('/') || /["\n\r\0\\]/.test(p)) {
    throw new JrError('JR_E_USAGE', `Expected an absolute path inside the image without quotes, backslashes or newlines, got ${JSON.stringify(p)}`);
  }
}

/**
 * List a directory inside the image. Names come from an untrusted image: anything that could
 * escape the output directory when dumped ('/', NUL, newline, '.', '..') is an error, not a file.
 */
export async function listDir(image: string, dir: string): Promise<DirEntry[] | null> {
  checkImagePath(dir);
  const { stdout, stderr } = await debugfs(image, `ls -p "${dir}"`);
  if (/File not found|not a directory|Ext2 inode is not a directory/i.test(stderr)) return null;
  return parseLsP(stdout, dir);
}

/**
 * Parse `debugfs ls -p` output for directory `dir`. Names come from an untrusted image: anything
 * that could escape the output directory when dumped ('/', NUL, newline, extra '.'/'..') throws.
 */
export function parseLsP(stdout: string, dir: string): DirEntry[] {
  const entries: DirEntry[] = [];
  let dots = 0;
  for (const line of stdout.split('\n')) {
    if (!line) continue;
    const f = line.split('/');
    // Format: /inode/mode/uid/gid/name/size/ -> 8 fields, empty first and last, numbers where
    // numbers belong. A name holding '/' or a newline breaks this shape and is refused; one that
    // forges a whole extra line is caught by the numeric fields or the '.'/'..' count below.
    const numeric = /^\d+$/.test(f[1] ?? '') && /^[0-7]+$/.test(f[2] ?? '') && /^\d+$/.test(f[3] ?? '') && /^\d+$/.test(f[4] ?? '') && /^\d*$/.test(f[6] ?? '');
    if (f.length !== 8 || f[0] !== '' || f[7] !== '' || !numeric) {
      throw new JrError('JR_E_INPUT', `refusing to extract: the image has an unsafe file name in ${dir}: ${JSON.stringify(line.slice(0, 120))}`);
    }
    const name = f[5]!;
    if (name === '.' || name === '..') {
      if (++dots > 2) throw new JrError('JR_E_INPUT', `refusing to extract: the image has an extra '${name}' entry in ${dir}`);
      continue;
    }
    if (name === '' || name.includes('\0')) throw new JrError('JR_E_INPUT', `refusing to extract: the image has an empty or NUL file name in ${dir}`);
    const mode = parseInt(f[2]!, 8);
    entries.push({ name, mode, isDir: (mode & 0o170000) === 0o040000, size: Number(f[6]) });
  }
  return entries;
}

/** True when `p` exists in the image. */
export async function existsInImage(image: string, p: string): Promise<boolean> {
  checkImagePath(p);
  const { stderr } = await debugfs(image, `stat "${p}"`);
  return !/File not found|not found by ext2_lookup/i.test(stderr);
}

/** Check every name below `dir` in the image (recursively) is safe to write to the host. */
export async function checkTreeNames(image: string, dir: string, limit = 1_000_000): Promise<number> {
  let count = 0;
  const queue = [dir];
  while (queue.length > 0) {
    const d = queue.shift()!;
    const entries = await listDir(image, d);
    if (!entries) continue;
    for (const e of entries) {
      if (/["\\\n\r]/.test(e.name)) throw new JrError('JR_E_INPUT', `refusing to extract: unsupported file name ${JSON.stringify(e.name)} in ${d}`);
      if (++count > limit) throw new JrError('JR_E_INPUT', `refusing to extract: more than ${limit} files`);
      if (e.isDir) queue.push(`${d === '/' ? '' : d}/${e.name}`);
    }
  }
  return count;
}

/** Recursively copy `p` from the image into the host directory `outDir` (as outDir/basename(p)). */
export async function dumpTree(image: string, p: string, outDir: string): Promise<void> {
  checkImagePath(p);
  const st = await stat(outDir);
  if (!st.isDirectory()) throw new JrError('JR_E_USAGE', `${outDir} is not a directory`);
  const { stderr } = await debugfs(image, `rdump "${p}" "${outDir}"`);
  const errors = stderr.split('\n').filter((l) => l.trim() && !/^debugfs \d/.test(l));
  if (errors.length > 0) throw new JrError('JR_E_PROCESS', `extracting ${p} failed: ${errors.slice(0, 5).join('; ')}`);
}
