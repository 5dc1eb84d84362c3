// debugfs on an untrusted ext2/3/4 image, always through the confined runner (src/image/confine.ts),
// always read-only and in catastrophic mode (-c: the bitmaps are not even read). Requests name
// inodes by number (<N>), so no name from the image is ever pasted into a request. One debugfs
// process (-f -, commands on stdin) serves a whole session: requests go in batches closed by a
// random end marker, and each batch's output is split on the echo of each request.
// Everything parsed here is the image's word only: callers bound what they do with it.
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { JrError } from '../errors.js';
import { openConfined, type ConfinedImage, type ConfinedSession, type ConfineLimits } from './confine.js';
import { parseLsP, type DirEntry } from './ext.js';

export interface Superblock {
  blockSize: number; inodeCount: number; blockCount: number;
  /** Free blocks, and those reserved for root (df's Avail is the difference). */
  freeBlocks: number; reservedBlocks: number;
}

/** A mapped run of a file: `count` blocks at logical block `logical` stored at physical `physical`. */
export interface Extent { logical: number; physical: number; count: number }

export interface InodeInfo {
  ino: number;
  type: 'regular' | 'directory' | 'symlink' | 'other';
  mode: number;
  size: number;
  /** Data stored in the inode itself (ext4 inline_data): read it with `cat`. */
  inline: boolean;
  /** Initialised data extents (unwritten ones read as zeros: they are holes to us). */
  extents: Extent[];
  /** A fast symlink's target (stored in the inode). */
  fastLink: string | null;
}

/** Requests per batch: bounds one exchange's output and time. */
export const BATCH = 256;

/** The root directory's inode in every ext filesystem. */
export const ROOT_INO = 2;

/** An image opened for confined debugfs requests: one debugfs in one sandbox serves them all. */
export class DebugfsImage {
  private seq = 0;
  private readonly nonce = randomBytes(12).toString('hex');

  /** `file`: the image on the host (its bytes are read at offsets the answers name, never parsed). */
  private constructor(private readonly box: ConfinedImage, private readonly sess: ConfinedSession, readonly file: string) {}

  /** Open `image` (see openConfined for who can read it); close() when done. */
  static async open(image: string, limits: Partial<ConfineLimits> = {}): Promise<DebugfsImage> {
    const box = await openConfined(image);
    try {
      // One process serves a whole extraction: CPU for all of it (a huge honest tree takes a while).
      const sess = await box.session('debugfs', ['-c', '-f', '-', box.path], { cpuSeconds: 600, ...limits });
      return new DebugfsImage(box, sess, path.resolve(image));
    } catch (e) {
      await box.close();
      throw e;
    }
  }

  async close(): Promise<void> {
    try { await this.sess.close(); } finally { await this.box.close(); }
  }

  /** Send requests; each one's raw stdout (in order) and the exchange's stderr problems. */
  private async send(requests: string[]): Promise<{ parts: Buffer[]; problems: string[] }> {
    for (const r of requests) if (/[\n\r]/.test(r)) throw new JrError('JR_E_INTERNAL', 'a debugfs request holds a newline');
    // An unknown command as the end marker: debugfs echoes it on stdout and complains on stderr.
    // The image cannot forge it: the nonce is random per session.
    const mark = `jr-end-${this.nonce}-${++this.seq}`;
    const r = await this.sess.exchange(requests.join('\n') + `\n${mark}\n`, Buffer.from(`debugfs: ${mark}\n`), mark);
    const problems = r.stderr.split('\n').filter((l) => l.trim() && !/^debugfs \d/.test(l) && !/catastrophic mode/.test(l) && !l.trim().endsWith('Command not found'));
    return { parts: splitEchoes(r.stdout, requests), problems };
  }

  /** Run requests; returns each request's stdout as text, in order; any complaint is an error. */
  async batch(requests: string[]): Promise<string[]> {
    const { parts, problems } = await this.send(requests);
    if (problems.length > 0) throw new JrError('JR_E_INPUT', `debugfs could not read the image: ${problems.slice(0, 3).join('; ')}`);
    return parts.map((b) => b.toString('utf8'));
  }

  /** Block size and counts from the superblock. */
  async superblock(): Promise<Superblock> {
    const [out] = await this.batch(['stats -h']);
    const num = (k: string): number => {
      const m = new RegExp(`^${k}:\\s+(\\d+)$`, 'm').exec(out!);
      if (!m) throw new JrError('JR_E_INPUT', `the image's superblock has no ${k}`);
      return Number(m[1]);
    };
    const sb = {
      blockSize: num('Block size'), inodeCount: num('Inode count'), blockCount: num('Block count'),
      freeBlocks: num('Free blocks'), reservedBlocks: num('Reserved block count'),
    };
    if (![1024, 2048, 4096, 65536].includes(sb.blockSize)) throw new JrError('JR_E_INPUT', `the image claims an unsupported block size ${sb.blockSize}`);
    return sb;
  }

  /** The inode at absolute path `p` inside the image, or null when there is none. */
  async lookup(p: string): Promise<number | null> {
    checkImagePath(p);
    if (p === '/') return ROOT_INO;
    const { parts } = await this.send([`stat "${p}"`]);
    const m = /^Inode: (\d+)\s/m.exec(parts[0]!.toString('utf8'));
    return m ? Number(m[1]) : null;
  }

  /** `ls -p` of each directory inode. */
  async listDirs(inos: number[]): Promise<Map<number, DirEntry[]>> {
    const out = new Map<number, DirEntry[]>();
    for (let i = 0; i < inos.length; i += BATCH) {
      const part = inos.slice(i, i + BATCH);
      const res = await this.batch(part.map((n) => `ls -p <${n}>`));
      part.forEach((n, j) => out.set(n, parseLsP(res[j]!, `directory inode ${n}`)));
    }
    return out;
  }

  /** `stat` of each inode. */
  async statInodes(inos: number[]): Promise<Map<number, InodeInfo>> {
    const out = new Map<number, InodeInfo>();
    for (let i = 0; i < inos.length; i += BATCH) {
      const part = inos.slice(i, i + BATCH);
      const res = await this.batch(part.map((n) => `stat <${n}>`));
      part.forEach((n, j) => out.set(n, parseStat(n, res[j]!)));
    }
    return out;
  }

  /** The bytes of a small inline-data file (`cat`), at most `size` of them. */
  async catInline(ino: number, size: number): Promise<Buffer> {
    const { parts, problems } = await this.send([`cat <${ino}>`]);
    if (problems.length > 0) throw new JrError('JR_E_INPUT', `debugfs could not read inode ${ino}: ${problems[0]}`);
    return parts[0]!.subarray(0, size);
  }
}

/** debugfs takes paths inside its request string: refuse characters its parser would treat specially. */
export function checkImagePath(p: string): void {
  if (!p.startsWith('/') || /["\n\r\0\\]/.test(p)) {
    throw new JrError('JR_E_USAGE', `Expected an absolute path inside the image without quotes, backslashes or newlines, got ${JSON.stringify(p)}`);
  }
}

/** Split `debugfs -f` output on the echo line of each request ("debugfs: REQUEST\n"), in order. */
export function splitEchoes(stdout: Buffer, requests: string[]): Buffer[] {
  const parts: Buffer[] = [];
  let from = 0;
  let prevEnd = -1;
  for (const req of requests) {
    const echo = Buffer.from(`debugfs: ${req}\n`);
    // The text between two echoes is the first one's answer. A forged echo inside an answer only
    // cuts answers short: the parsers then refuse them (see parseLsP).
    const at = stdout.indexOf(echo, from);
    if (at < 0) throw new JrError('JR_E_INPUT', `debugfs did not answer request ${JSON.stringify(req)}`);
    if (prevEnd >= 0) parts.push(stdout.subarray(prevEnd, at));
    prevEnd = at + echo.length;
    from = prevEnd;
  }
  if (prevEnd >= 0) parts.push(stdout.subarray(prevEnd));
  return parts;
}

const TYPES: Record<string, InodeInfo['type']> = { regular: 'regular', directory: 'directory', symlink: 'symlink' };

/** Parse `stat <N>` output. The numbers are the image's claims: callers check them against caps. */
export function parseStat(ino: number, text: string): InodeInfo {
  const head = /^Inode: (\d+)\s+Type: ([a-zA-Z ]+?)\s+Mode:\s+(\d+)\s+Flags: 0x([0-9a-f]+)$/m.exec(text);
  const size = /^User:.*\sSize: (\d+)$/m.exec(text);
  if (!head || !size || Number(head[1]) !== ino) throw new JrError('JR_E_INPUT', `the image's inode ${ino} cannot be read (debugfs said: ${JSON.stringify(text.slice(0, 200))})`);
  const flags = parseInt(head[4]!, 16);
  const info: InodeInfo = {
    ino, type: TYPES[head[2]!] ?? 'other', mode: parseInt(head[3]!, 8), size: Number(size[1]),
    inline: (flags & 0x10000000) !== 0, extents: [], fastLink: null,
  };
  const link = /^Fast link dest: "(.*)"$/m.exec(text);
  if (link) info.fastLink = link[1]!;
  // The map is the last EXTENTS:/BLOCKS: section: (L-L2):P-P2, (L[u]):P, (IND):P, (ETB0):P, ...
  const at = Math.max(text.lastIndexOf('\nEXTENTS:\n'), text.lastIndexOf('\nBLOCKS:\n'));
  if (at >= 0) {
    const body = text.slice(text.indexOf(':\n', at + 1) + 2).split('\nTOTAL:')[0]!;
    const re = /\((\d+)(?:-(\d+))?(\[u\])?\):(\d+)(?:-(\d+))?/g;
    for (let m = re.exec(body); m; m = re.exec(body)) {
      if (m[3]) continue; // unwritten: zeros
      const logical = Number(m[1]);
      const count = (m[2] === undefined ? logical : Number(m[2])) - logical + 1;
      const physical = Number(m[4]);
      const pcount = (m[5] === undefined ? physical : Number(m[5])) - physical + 1;
      if (count !== pcount || count < 1) throw new JrError('JR_E_INPUT', `the image's inode ${ino} has a malformed block map: ${m[0]}`);
      info.extents.push({ logical, physical, count });
    }
  }
  return info;
}
