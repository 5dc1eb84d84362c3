// Reading files out of an untrusted ext image: the API every host-side reader uses
// (scripts/extract, a job's manifest, a job's output served as a tar).
//
//   readImageFile(image, '/job/jobrunner.json', { maxBytes: 65536 })  -> Buffer | null
//   extractTree(image, '/output', outDir, { maxBytes, maxFiles, maxDepth })  -> ExtractSummary
//   imageHas(image, '/output')  -> boolean
//   tarTree(image, '/output', caps)  -> Readable tar stream (src/image/tar-tree.ts)
//   openImage(image)  -> one confined session for several of the above (close() it)
//
// The filesystem is parsed by debugfs in the sandbox (src/image/confine.ts) and only its answers
// (directory listings, inode sizes and block maps) reach us. We then copy the mapped blocks out of
// the image file ourselves: the file is never interpreted here, only read at offsets that the
// answers name and that we check lie inside it. So
//   - holes stay holes: only mapped, non-zero blocks are written, and the data written never
//     exceeds the image's size (an honest tree's data is stored in the image once: ext4 has no
//     shared blocks, and hard links are made links); the sum of apparent sizes, what a copy or a
//     tar would produce, is capped too (maxBytes: default 16 x the image's size, at least 1 GiB);
//   - a directory met twice (a cycle, or a hard-linked directory) is an error, never a loop;
//   - entries are capped (maxFiles: default the filesystem's inode count) and so is depth;
//   - nothing is written outside outDir: every name is checked, every directory and file is
//     created fresh (never followed, never merged), symlinks are written but never followed;
//   - modes keep only the permission bits (no setuid/setgid/sticky); owners are the caller's.
// Every refusal is a JrError JR_E_INPUT that says which cap and how to raise it.
import { link, lstat, mkdir, open, symlink, chmod, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { JrError } from '../errors.js';
import { DebugfsImage, ROOT_INO, type InodeInfo, type Superblock } from './debugfs.js';

export interface ExtractCaps {
  /** Sum of the sizes of the files written (apparent sizes: what a copy or tar would produce). */
  maxBytes: number;
  /** Directory entries extracted. */
  maxFiles: number;
  /** Directory nesting below the extracted path. */
  maxDepth: number;
}

export interface ExtractSummary { entries: number; bytes: number; written: number; skipped: string[] }

type Source = string | DebugfsImage;

/** Caps sized from the image: 16 x its size (at least 1 GiB) in apparent bytes, its inode count, 256 levels. */
export function defaultCaps(imageBytes: number, sb: Superblock): ExtractCaps {
  return { maxBytes: Math.max(16 * imageBytes, 1024 ** 3), maxFiles: sb.inodeCount, maxDepth: 256 };
}

/** Run fn on an open DebugfsImage (opening and closing one when given a path). */
async function using<T>(src: Source, fn: (d: DebugfsImage, file: string) => Promise<T>): Promise<T> {
  if (typeof src !== 'string') return fn(src, src.file);
  const d = await DebugfsImage.open(src);
  try { return await fn(d, src); } finally { await d.close(); }
}

/** Open an image once for several reads (close() it after). */
export function openImage(image: string): Promise<DebugfsImage> { return DebugfsImage.open(image); }

/** True when `p` exists in the image. */
export function imageHas(src: Source, p: string): Promise<boolean> {
  return using(src, async (d) => (await d.lookup(p)) !== null);
}

/** The contents of the regular file `p` in the image, or null when there is none; more than maxBytes is an error. */
export function readImageFile(src: Source, p: string, opts: { maxBytes: number }): Promise<Buffer | null> {
  return using(src, async (d, file) => {
    const ino = await d.lookup(p);
    if (ino === null) return null;
    const info = (await d.statInodes([ino])).get(ino)!;
    if (info.type !== 'regular') throw new JrError('JR_E_INPUT', `${p} in the image is not a regular file`);
    if (info.size > opts.maxBytes) throw new JrError('JR_E_INPUT', `${p} in the image is ${info.size} bytes, more than the ${opts.maxBytes} allowed`);
    const sb = await d.superblock();
    if (info.inline) return d.catInline(ino, info.size);
    const buf = Buffer.alloc(info.size);
    await copyBlocks(file, sb.blockSize, info, async (data, at) => { data.copy(buf, at); });
    return buf;
  });
}

/**
 * Copy `p` (a file or a directory tree) from the image into outDir as outDir/basename(p), or the
 * root's entries into outDir itself when p is '/' (lost+found left out). Caps default to
 * defaultCaps(); past one, a JrError JR_E_INPUT (what was written so far stays, inside outDir).
 */
export function extractTree(src: Source, p: string, outDir: string, caps: Partial<ExtractCaps> = {}): Promise<ExtractSummary> {
  return using(src, async (d, file) => {
    const sb = await d.superblock();
    const imageBytes = (await lstat(file)).size;
    const cap: ExtractCaps = { ...defaultCaps(imageBytes, sb), ...caps };
    const ino = await d.lookup(p);
    if (ino === null) throw new JrError('JR_E_USAGE', `${p} does not exist in the image`);
    const x = new Extraction(d, file, sb, cap, imageBytes);
    const root = (await d.statInodes([ino])).get(ino)!;
    const target = p === '/' ? outDir : path.join(outDir, path.posix.basename(p));
    if (root.type === 'directory') await x.tree(ino, target, p, p === '/' ? null : root.mode);
    else await x.files([{ ino, host: target, shown: p }]);
    return x.summary;
  });
}

interface Pending { ino: number; host: string; shown: string }

class Extraction {
  readonly summary: ExtractSummary = { entries: 0, bytes: 0, written: 0, skipped: [] };
  private readonly seenDirs = new Set<number>();
  private readonly linked = new Map<number, string>();

  constructor(private readonly d: DebugfsImage, private readonly file: string, private readonly sb: Superblock,
    private readonly cap: ExtractCaps, private readonly imageBytes: number) {}

  /** Breadth first, one debugfs run per BATCH directories of a level. */
  /** `mode`: create `host` with it; null: `host` is outDir itself, which exists and keeps its mode. */
  async tree(ino: number, host: string, shown: string, mode: number | null): Promise<void> {
    const dirModes: Array<{ host: string; mode: number }> = [];
    if (mode !== null) { await fresh(host, () => mkdir(host, 0o700)); dirModes.push({ host, mode }); }
    this.seenDirs.add(ino);
    let level: Array<Pending & { depth: number }> = [{ ino, host, shown, depth: 0 }];
    while (level.length > 0) {
      const lists = await this.d.listDirs(level.map((l) => l.ino));
      const next: typeof level = [];
      const files: Pending[] = [];
      for (const dir of level) {
        for (const e of lists.get(dir.ino)!) {
          if (dir.ino === ROOT_INO && e.name === 'lost+found') continue;
          const entry = { ino: e.ino, host: path.join(dir.host, e.name), shown: `${dir.shown === '/' ? '' : dir.shown}/${e.name}` };
          if (++this.summary.entries > this.cap.maxFiles) {
            throw new JrError('JR_E_INPUT', `refusing to extract: more than ${this.cap.maxFiles} entries below ${shown} (the cap on files; raise it with --max-files)`);
          }
          if (!e.isDir) { files.push(entry); continue; }
          if (this.seenDirs.has(e.ino)) {
            throw new JrError('JR_E_INPUT', `refusing to extract: the image's directory tree has a cycle (or a hard-linked directory): ${entry.shown} is directory inode ${e.ino} again`);
          }
          if (dir.depth + 1 > this.cap.maxDepth) {
            throw new JrError('JR_E_INPUT', `refusing to extract: directories nest deeper than ${this.cap.maxDepth} levels at ${entry.shown.slice(0, 200)}… (raise it with --max-depth)`);
          }
          this.seenDirs.add(e.ino);
          await fresh(entry.host, () => mkdir(entry.host, 0o700));
          dirModes.push({ host: entry.host, mode: e.mode });
          next.push({ ...entry, depth: dir.depth + 1 });
        }
      }
      await this.files(files);
      level = next;
    }
    // Directories were kept 0700 while filling; now their own permission bits (owner keeps rwx).
    for (const { host: h, mode } of dirModes.reverse()) await chmod(h, (mode & 0o777) | 0o700);
  }

  /** Regular files, symlinks (written, never followed) and hard links; other types are skipped. */
  async files(list: Pending[]): Promise<void> {
    if (list.length === 0) return;
    const infos = await this.d.statInodes([...new Set(list.map((f) => f.ino))]);
    for (const f of list) {
      const info = infos.get(f.ino)!;
      if (info.type === 'regular') await this.regular(f, info);
      else if (info.type === 'symlink') await this.symlink(f, info);
      else this.summary.skipped.push(f.shown);
    }
  }

  private async regular(f: Pending, info: InodeInfo): Promise<void> {
    const first = this.linked.get(info.ino);
    if (first) { await fresh(f.host, () => link(first, f.host)); return; }
    this.summary.bytes += info.size;
    if (this.summary.bytes > this.cap.maxBytes) {
      throw new JrError('JR_E_INPUT', `refusing to extract: the files add up to more than ${this.cap.maxBytes} bytes at ${f.shown} (it claims ${info.size}; the cap on bytes, sized from the image; raise it with --max-bytes)`);
    }
    const fh = await fresh(f.host, () => open(f.host, 'wx', 0o600));
    try {
      await fh.truncate(info.size); // the apparent size, as a hole: blocks below fill it in
      if (info.inline) await fh.write(await this.d.catInline(info.ino, info.size), 0, undefined, 0);
      else {
        await copyBlocks(this.file, this.sb.blockSize, info, async (data, at) => {
          // More data than the image holds means blocks used twice (an honest ext4 shares none).
          if ((this.summary.written += data.length) > this.imageBytes) {
            throw new JrError('JR_E_INPUT', `refusing to extract: at ${f.shown} the data written passes the image's own size (${this.imageBytes} bytes): its files share blocks`);
          }
          await fh.write(data, 0, data.length, at);
        });
      }
      await fh.chmod(info.mode & 0o777);
    } finally {
      await fh.close();
    }
    this.linked.set(info.ino, f.host);
  }

  private async symlink(f: Pending, info: InodeInfo): Promise<void> {
    let target = info.fastLink;
    if (target === null) {
      if (info.size > 4096) throw new JrError('JR_E_INPUT', `refusing to extract: symlink ${f.shown} claims a ${info.size}-byte target`);
      const buf = Buffer.alloc(info.size);
      if (info.inline) (await this.d.catInline(info.ino, info.size)).copy(buf);
      else await copyBlocks(this.file, this.sb.blockSize, info, async (data, at) => { data.copy(buf, at); });
      target = buf.toString('utf8');
    }
    if (target === '' || target.includes('\0')) throw new JrError('JR_E_INPUT', `refusing to extract: symlink ${f.shown} has an empty or NUL target`);
    await fresh(f.host, () => symlink(target, f.host));
  }
}

/** Create something that must not exist yet: an existing name (a duplicate entry, or one already in outDir) is an error. */
async function fresh<T>(host: string, make: () => Promise<T>): Promise<T> {
  try {
    return await make();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new JrError('JR_E_INPUT', `refusing to extract: ${host} already exists (a name twice in one directory of the image, or left in OUTDIR)`);
    if (code === 'ENAMETOOLONG') throw new JrError('JR_E_INPUT', `refusing to extract: a path in the image is too long for the host (${host.slice(0, 120)}…)`);
    throw e;
  }
}

const CHUNK = 1024 * 1024;
const ZEROS = Buffer.alloc(64 * 1024);

/**
 * Read the mapped blocks of `info` from the image file and hand them to `put(data, fileOffset)`,
 * clipped to the file's size; all-zero 64 KiB pieces are not handed over (they stay holes).
 * Block numbers are checked to lie inside the image file. Returns the bytes handed over.
 */
export async function copyBlocks(image: string, bs: number, info: InodeInfo, put: (data: Buffer, at: number) => Promise<void>): Promise<number> {
  let fh: FileHandle | null = null;
  let handed = 0;
  try {
    fh = await open(image, 'r');
    const imageSize = (await fh.stat()).size;
    const buf = Buffer.alloc(CHUNK);
    for (const ext of info.extents) {
      const start = ext.logical * bs;
      if (start >= info.size) continue;
      const len = Math.min(ext.count * bs, info.size - start);
      const from = ext.physical * bs;
      if (from + len > imageSize) {
        throw new JrError('JR_E_INPUT', `refusing to extract: inode ${info.ino} maps blocks ${ext.physical}-${ext.physical + ext.count - 1}, outside the ${imageSize}-byte image`);
      }
      for (let off = 0; off < len; off += CHUNK) {
        const n = Math.min(CHUNK, len - off);
        const { bytesRead } = await fh.read(buf, 0, n, from + off);
        if (bytesRead !== n) throw new JrError('JR_E_INPUT', `short read of inode ${info.ino}'s blocks from the image`);
        for (let p = 0; p < n; p += ZEROS.length) {
          const piece = buf.subarray(p, Math.min(n, p + ZEROS.length));
          if (piece.equals(ZEROS.subarray(0, piece.length))) continue;
          await put(Buffer.from(piece), start + off + p);
          handed += piece.length;
        }
      }
    }
    return handed;
  } finally {
    await fh?.close();
  }
}
