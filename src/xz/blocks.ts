// From a source file to a sequence of .xz blocks: read only the data ranges, classify them, merge
// neighbouring zero runs (holes and zero pages alike), and encode each segment as one block.
import type { FileHandle } from 'node:fs/promises';
import { JrError } from '../errors.js';
import { classify, type ClassifyOptions, type Segment } from './classify.js';
import { crc32, crc32Zeros } from './crc32.js';
import type { Range } from './extents.js';
import { readFully } from '../fsutil.js';
import { blockParts, lzma2DictProp, type IndexRecord } from './format.js';
import { lzma2Chunks, storedLzma2, xzLzma2, zeroLzma2, PRESET_DICT, ZERO_DICT } from './lzma2.js';
import type { XzProcess } from './xzproc.js';

/** Zero blocks are cut at this size: xz -T decoders buffer a whole block per thread, and 24 MiB
 *  is the block size of xz -T0 -6 itself, so our files never need more decoder memory than xz's. */
export const ZERO_BLOCK_MAX = 24 * 1024 * 1024;

/** Read buffers of one size, reused: a fresh 24 MiB buffer per read left hundreds of MiB of
 *  garbage for the GC to find (peak RSS 550 MiB on the dense bench image instead of ~300). */
export class BufferPool {
  private readonly free: Buffer[] = [];
  constructor(readonly size: number) {}
  /** A buffer of `size` bytes (contents undefined). */
  take(): Buffer { return this.free.pop() ?? Buffer.allocUnsafeSlow(this.size); }
  /** Return the buffer whose memory is `ab` (segments only keep views of it). */
  give(ab: ArrayBufferLike): void { if (ab.byteLength === this.size) this.free.push(Buffer.from(ab, 0, ab.byteLength)); }
}

async function readExact(fh: FileHandle, pos: number, len: number, pool: BufferPool): Promise<Buffer> {
  const buf = pool.take().subarray(0, len);
  const got = await readFully(fh, buf, len, pos);
  if (got < len) throw new JrError('JR_E_XZ', `source shrank while being read (EOF at ${pos + got}, expected ${pos + len})`);
  return buf;
}

/** Segments of the whole file in order: data read in `pool.size` pieces aligned to file offsets.
 *  `ranges` are dataExtents' (sorted, small holes already joined); everything else is zeros.
 *  Data segments are views of pool buffers; the consumer gives each buffer back when done with it. */
export async function* segmentsOf(fh: FileHandle, size: number, ranges: readonly Range[], pool: BufferPool,
  copts?: ClassifyOptions): AsyncGenerator<Segment> {
  const blockSize = pool.size;
  let zeroStart = 0;
  let zeroLen = 0;
  function* flushZeros(): Generator<Segment> {
    for (let s = 0; s < zeroLen; s += ZERO_BLOCK_MAX) {
      yield { kind: 'zero', offset: zeroStart + s, length: Math.min(ZERO_BLOCK_MAX, zeroLen - s) };
    }
    zeroLen = 0;
  }
  function* push(seg: Segment): Generator<Segment> {
    if (seg.kind === 'zero') {
      if (zeroLen === 0) zeroStart = seg.offset;
      zeroLen += seg.length;
      return;
    }
    yield* flushZeros();
    yield seg;
  }
  let pos = 0;
  for (const [a, b] of [...ranges, [size, size] as Range]) {
    if (a > pos) yield* push({ kind: 'zero', offset: pos, length: a - pos });
    for (let s = a; s < b;) {
      const e = Math.min(b, (Math.floor(s / blockSize) + 1) * blockSize);
      const buf = await readExact(fh, s, e - s, pool);
      for (const seg of classify(buf, s, copts)) yield* push(seg);
      s = e;
    }
    pos = Math.max(pos, b);
  }
  yield* flushZeros();
}

/** One finished block: its bytes (in pieces, to be written in order), size, index record, kind and
 *  the source offset of what it decodes to. */
export interface EncodedBlock { parts: Buffer[]; size: number; record: IndexRecord; kind: Segment['kind']; offset: number }

export interface EncodeContext {
  preset: number;
  /** Child processes of this compression, so a failure or abort can kill them. */
  live: Set<XzProcess>;
}

/** Smallest power-of-two dictionary >= n (>= 4 KiB), capped at the preset's dictionary. */
export function dictFor(n: number, preset: number): number {
  let d = 4096;
  while (d < n && d < PRESET_DICT[preset]!) d *= 2;
  return Math.min(d, PRESET_DICT[preset]!);
}

/** Encode one segment as a complete block (header, LZMA2 data, padding, CRC32). */
export async function encodeSegment(seg: Segment, ctx: EncodeContext): Promise<EncodedBlock> {
  if (seg.kind === 'zero') {
    const raw = await zeroLzma2(seg.length);
    return { ...blockParts([raw], seg.length, crc32Zeros(seg.length), lzma2DictProp(ZERO_DICT)), kind: 'zero', offset: seg.offset };
  }
  const crc = crc32(seg.data);
  if (seg.kind === 'store') {
    // Uncompressed chunks never reference the dictionary: the smallest one is enough.
    return { ...blockParts(storedLzma2(seg.data), seg.data.length, crc, lzma2DictProp(ZERO_DICT)), kind: 'store', offset: seg.offset };
  }
  const dict = dictFor(seg.data.length, ctx.preset);
  const raw = await xzLzma2(seg.data, ctx.preset, dict, ctx.live);
  // Cheap sanity check of what the child gave us: whole chunks, one end marker, right size.
  const total = lzma2Chunks(raw).reduce((n, c) => n + c.uncompressed, 0);
  if (total !== seg.data.length) {
    throw new JrError('JR_E_XZ', `xz produced LZMA2 for ${total} bytes, expected ${seg.data.length}`);
  }
  return { ...blockParts([raw], seg.data.length, crc, lzma2DictProp(dict)), kind: 'lzma', offset: seg.offset };
}
