// `scripts/mkimage DIR|TARBALL [-o OUT] [--size SIZE | --extra SIZE] [--fs ext2|ext4]`:
// a job image from a directory or tarball, without root and without mounting.
import { entryExists, tempName } from '../fsutil.js';
import { constants } from 'node:fs';
import { access, lstat, mkdtemp, realpath, rename, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { JrError } from '../errors.js';
import { makeExtImage, treeSize, type ExtFs } from '../image/ext.js';
import { run } from '../proc.js';
import { formatBytes, parseSize } from '../units.js';
import { isMain, runMain } from './args.js';

const HELP = `Usage: scripts/mkimage SOURCE [-o OUT] [--size SIZE | --extra SIZE] [--fs ext2|ext4] [--force]

Makes a job image (a sparse ext2/ext4 filesystem image) from SOURCE, a directory or a
.tar/.tar.gz/.tgz/.tar.xz tarball, without root and without mounting (mke2fs -d).
SOURCE must contain bin/construir, executable: the job's entry point, run as root in the guest
with /job as its working directory. Modes, symlinks and empty directories are preserved.
Convention: the job writes its results to /job/output/.

Options:
  -o, --output OUT   image to write (default: ./<name of SOURCE>.img); never overwritten unless --force
  --size SIZE        total filesystem size (e.g. 2G); must hold the content
  --extra SIZE       free space on top of the content (default 1G; sparse, costs no disk)
  --fs TYPE          ext4 (default, journalled) or ext2
  --force            replace OUT if it exists
  -h, --help         this help
`;

const DEFAULT_EXTRA = 1024 ** 3;

/** Entry point of mkimage; returns the exit code (0 ok, 1 refused input, 2 usage). */
export async function main(argv: string[]): Promise<number> {
  try {
    return await mkimage(argv);
  } catch (e) {
    if (e instanceof JrError && e.code === 'JR_E_INPUT') { process.stderr.write(`mkimage: ${e.message}\n`); return 1; }
    throw e;
  }
}

async function mkimage(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true, strict: true,
    options: {
      output: { type: 'string', short: 'o' }, size: { type: 'string' }, extra: { type: 'string' },
      fs: { type: 'string', default: 'ext4' }, force: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) { process.stdout.write(HELP); return 0; }
  if (positionals.length !== 1) throw new JrError('JR_E_USAGE', `Expected one SOURCE directory or tarball, got ${positionals.length} (see --help)`);
  if (values.size && values.extra) throw new JrError('JR_E_USAGE', 'Expected --size or --extra, not both');
  const fs = values.fs as ExtFs;
  if (fs !== 'ext2' && fs !== 'ext4') throw new JrError('JR_E_USAGE', `Expected --fs to be ext2 or ext4, got ${JSON.stringify(values.fs)}`);
  const sizeOpt = values.size === undefined ? null : parseSize(values.size);
  const extra = values.extra === undefined ? DEFAULT_EXTRA : parseSize(values.extra);
  if (values.size !== undefined && !sizeOpt) throw new JrError('JR_E_USAGE', `Expected --size to be a size such as 2G, got ${JSON.stringify(values.size)}`);
  if (extra === null) throw new JrError('JR_E_USAGE', `Expected --extra to be a size such as 512M, got ${JSON.stringify(values.extra)}`);

  const source = path.resolve(positionals[0]!);
  const srcStat = await stat(source).catch(() => null);
  if (!srcStat) throw new JrError('JR_E_USAGE', `${source} does not exist`);
  const tarball = srcStat.isFile() ? tarCompression(source) : null;
  if (srcStat.isFile() && tarball === null) throw new JrError('JR_E_USAGE', `${source} is a file but not a .tar, .tar.gz, .tgz or .tar.xz tarball`);
  const name = path.basename(source).replace(/\.(tar(\.gz|\.xz)?|tgz)$/, '');
  const out = path.resolve(values.output ?? `${name}.img`);
  const outDir = await stat(path.dirname(out)).catch(() => null);
  if (!outDir?.isDirectory()) throw new JrError('JR_E_USAGE', `cannot write ${out}: directory ${path.dirname(out)} does not exist`);
  if (!values.force && await entryExists(out)) {
    throw new JrError('JR_E_USAGE', `${out} already exists (use --force to replace it)`);
  }

  let tmp: string | null = null;
  try {
    let dir = source;
    if (tarball !== null) {
      tmp = await mkdtemp(path.join(os.tmpdir(), 'mkimage-'));
      // GNU tar refuses absolute and '..' member names by default; ownership is not restored.
      await run('tar', ['-x', `-${tarball}f`, source, '-C', tmp, '--no-same-owner', '--delay-directory-restore']);
      dir = tmp;
    }
    await checkEntryPoint(dir, source);
    const content = await treeSize(dir);
    // Room for ext metadata (inode tables, journal) on top of the content itself.
    const minimum = Math.ceil(content.bytes * 1.15) + 16 * 1024 * 1024;
    const size = sizeOpt ?? minimum + extra;
    if (size < minimum) throw new JrError('JR_E_USAGE', `--size ${formatBytes(size)} is too small: the content needs about ${formatBytes(minimum)}`);
    const partial = tempName(path.dirname(out), path.basename(out), 'part');
    await rm(partial, { force: true });
    await makeExtImage(dir, partial, size, fs);
    await rename(partial, out);
    process.stdout.write(`${out}: ${fs}, ${formatBytes(size)} (content ${formatBytes(content.bytes)} in ${content.entries} entries), sparse\n`);
    return 0;
  } finally {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  }
}

function tarCompression(file: string): '' | 'z' | 'J' | null {
  if (file.endsWith('.tar')) return '';
  if (file.endsWith('.tar.gz') || file.endsWith('.tgz')) return 'z';
  if (file.endsWith('.tar.xz')) return 'J';
  return null;
}

/** bin/construir must exist and be executable; a symlink must stay inside the job tree. */
async function checkEntryPoint(dir: string, shown: string): Promise<void> {
  const entry = path.join(dir, 'bin', 'construir');
  const st = await lstat(entry).catch(() => null);
  if (!st) throw new JrError('JR_E_INPUT', `${shown} has no bin/construir: every job needs this executable entry point`);
  let target = entry;
  if (st.isSymbolicLink()) {
    target = await realpath(entry).catch(() => '');
    const root = await realpath(dir);
    if (!target || !target.startsWith(root + path.sep)) {
      throw new JrError('JR_E_INPUT', `${shown}: bin/construir is a symlink that leaves the job tree (or dangles); make it a file`);
    }
  }
  const tst = await stat(target);
  if (!tst.isFile()) throw new JrError('JR_E_INPUT', `${shown}: bin/construir is not a regular file`);
  if ((tst.mode & 0o111) === 0) throw new JrError('JR_E_INPUT', `${shown}: bin/construir is not executable (chmod +x bin/construir)`);
  await access(target, constants.R_OK);
}

if (isMain(import.meta.url)) runMain('mkimage', main);
