// Checking a file compressFile just wrote, before the job's only other copy of its result is
// deleted, at the depth that needs: every byte of the file is either decoded by xz or compared
// with bytes computed again from the block layout.
//   - data blocks (lzma, store): decoded and checked (CRC32, sizes) by `xz -t`, fed a stream of
//     their own: a stream header, those blocks copied from the file, an index for them, a footer;
//   - zero blocks: compared byte for byte with the encoding of the same length (rebuilt from the
//     pieces the compressor used); the first of each length also goes to xz, so that encoding is
//     decoded and checked too;
//   - the stream header, index and footer: compared with ones built again from the layout (xz has
//     just checked the same builder's index against real blocks);
//   - the whole: the layout's blocks must cover the source from offset 0 to its size in order, and
//     the file's sha256 must be the one computed while writing it (what the status file records).
// On a 1 GiB result holding a few MB of data this reads the file once and decodes only the data,
// instead of inflating the 1 GiB of zero blocks as `xz -t` would (figures: docs/COMPRESSION.md).
import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { JrError, isJrError, messageOf } from '../errors.js';
import { encodeSegment, type EncodeContext } from './blocks.js';
import { indexAndFooter, streamHeader, type IndexRecord } from './format.js';
import { killXz, startXz, waitXz, type XzProcess } from './xzproc.js';
import { DEFAULT_MEM_LIMIT, xzDecodeArgs } from './decompress.js';
import { readFully } from '../fsutil.js';

/** One block as written: its kind, its bytes in the file (header to check, padding included), its
 *  index record and the source offset it decodes to. */
export interface BlockLayout { kind: 'zero' | 'store' | 'lzma'; size: number; record: IndexRecord; offset: number }

/** What compressFile reported about the file: its blocks, its sha256 and the source size. */
export interface Written { layout: readonly BlockLayout[]; sha256: string; bytesIn: number }

async function readAt(fh: FileHandle, buf: Buffer, len: number, pos: number): Promise<Buffer> {
  const got = await readFully(fh, buf, len, pos);
  if (got < len) throw new Error(`unexpected end of file at ${pos + got}`);
  return buf.subarray(0, len);
}

/** Write to xz's stdin and wait until the pipe has taken it (so `b` may be reused); false if xz is gone. */
function feed(p: XzProcess, b: Buffer): Promise<boolean> {
  return new Promise((resolve) => p.child.stdin!.write(b, (e) => resolve(!e)));
}

/** Throws JrError('JR_E_XZ') unless `path` is exactly the stream compressFile reported writing, every block of it sound. */
export async function verifyWritten(path: string, written: Written): Promise<void> {
  const { layout } = written;
  const fail = (why: string): never => { throw new JrError('JR_E_XZ', `${path}: ${why}`); };
  let covered = 0;
  for (const b of layout) {
    if (b.offset !== covered) fail(`its blocks do not follow the source in order (block for offset ${b.offset} where ${covered} was due)`);
    covered += b.record.uncompressedSize;
  }
  if (covered !== written.bytesIn) fail(`its blocks cover ${covered} bytes of a ${written.bytesIn}-byte source`);
  const hash = createHash('sha256');
  const head = streamHeader();
  const tail = indexAndFooter(layout.map((b) => b.record));
  const expectedSize = head.length + layout.reduce((n, b) => n + b.size, 0) + tail.length;
  let fh: FileHandle | undefined;
  let p: XzProcess | undefined;
  try {
    fh = await open(path, 'r');
    const size = (await fh.stat()).size;
    if (size !== expectedSize) fail(`is ${size} bytes, expected ${expectedSize} from its blocks`);
    const buf = Buffer.allocUnsafeSlow(layout.reduce((m, b) => Math.max(m, b.size), Math.max(head.length, tail.length)));
    const h = await readAt(fh, buf, head.length, 0);
    hash.update(h);
    if (!h.equals(head)) fail('stream header differs from ours');

    p = startXz(xzDecodeArgs('-', DEFAULT_MEM_LIMIT, '-t'), 'pipe'); // - : the stream we feed it
    p.child.stdout.resume();
    const decoded: IndexRecord[] = [];
    const zeroBlocks = new Map<number, Buffer>(); // uncompressed length -> our encoding of it
    const ctx: EncodeContext = { preset: 0, live: new Set() }; // presets play no part in zero blocks
    let alive = await feed(p, head);
    let pos = head.length;
    for (const b of layout) {
      const bytes = await readAt(fh, buf, b.size, pos);
      hash.update(bytes);
      let send = b.kind !== 'zero';
      if (b.kind === 'zero') {
        const n = b.record.uncompressedSize;
        let want = zeroBlocks.get(n);
        if (!want) {
          const e = await encodeSegment({ kind: 'zero', offset: 0, length: n }, ctx);
          want = Buffer.concat(e.parts);
          zeroBlocks.set(n, want);
          send = true;
        }
        if (!bytes.equals(want)) fail(`the zero block at offset ${pos} differs from our encoding of ${n} zero bytes`);
      }
      if (send && alive) {
        alive = await feed(p, bytes);
        decoded.push(b.record);
      }
      pos += b.size;
    }
    if (alive) await feed(p, indexAndFooter(decoded));
    p.child.stdin!.end();
    await waitXz(p, `${path}: a block does not decode`);
    p = undefined;
    const t = await readAt(fh, buf, tail.length, pos);
    hash.update(t);
    if (!t.equals(tail)) fail('index or stream footer differs from ours');
    if (hash.digest('hex') !== written.sha256) fail('its sha256 differs from the one computed while writing it');
  } catch (e) {
    if (p) await killXz(p);
    if (isJrError(e, 'JR_E_XZ')) throw e;
    throw new JrError('JR_E_XZ', `verifying ${path} failed: ${messageOf(e)}`, { cause: e });
  } finally {
    await fh?.close().catch(() => {});
  }
}
