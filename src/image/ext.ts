// ext2/3/4 images through e2fsprogs userspace only: mke2fs -d builds an image from a directory
// (no root, no mount); debugfs reads files out, always confined (src/image/debugfs.ts,
// extract-tree.ts). Neither hands image bytes to the host kernel.
import { lstat, readdir, rm } from 'node:fs/promises';
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
  ino: number;
  name: string;
  mode: number;
  isDir: boolean;
  size: number;
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
    // Inode 0 is an unused slot (a deleted entry, or an empty directory block): not an entry.
    if (f[1] === '0') continue;
    const name = f[5]!;
    if (name === '.' || name === '..') {
      if (++dots > 2) throw new JrError('JR_E_INPUT', `refusing to extract: the image has an extra '${name}' entry in ${dir}`);
      continue;
    }
    if (name === '' || name.includes('\0')) throw new JrError('JR_E_INPUT', `refusing to extract: the image has an empty or NUL file name in ${dir}`);
    const mode = parseInt(f[2]!, 8);
    entries.push({ ino: Number(f[1]), name, mode, isDir: (mode & 0o170000) === 0o040000, size: Number(f[6]) });
  }
  return entries;
}
