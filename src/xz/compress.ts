// Sparse-aware, parallel .xz compression of job images into one standard multi-block stream.
// Only the data ranges are read (SEEK_DATA); zero runs become blocks assembled from cached LZMA2
// pieces, incompressible runs become stored LZMA2 chunks, and the rest is compressed by up to
// `threads` `xz --format=raw` children at once. Blocks are written in order as they finish, so
// memory stays at about 2 x threads x blockSize of input plus its output. Figures: docs/COMPRESSION.md.
import { availableParallelism } from 'node:os';
import { open, rm, type FileHandle } from 'node:fs/promises';
import { JrError, isJrError, messageOf } from '../errors.js';
import { Semaphore } from '../semaphore.js';
import { BufferPool, encodeSegment, segmentsOf, type EncodeContext } from './blocks.js';
import { dataExtents } from './extents.js';
import { indexAndFooter, streamHeader } from './format.js';
import { BlockWindow, HashingWriter } from './window.js';
import { PRESET_DICT } from './lzma2.js';
import type { XzProcess } from './xzproc.js';
import type { BlockLayout } from './verify.js';

/**
 * LZMA2 preset for compressible data when none is given: 1, the knee of the curve on job images.
 * Measured on this machine, one core, `xz --format=raw --lzma2=preset=P` (docs/COMPRESSION.md):
 * on 25 MiB of build logs and prose -0 1.43 s / 8.18 MB, -1 2.16 s / 7.60 MB, -2 5.51 s / 7.48 MB,
 * -6 18.5 s / 6.36 MB; on /usr/lib -1 is 4.4-5.9x faster than -6 for 11-13% more output.
 * Results are compressed on the job's critical path and on cores that run other jobs, so the
 * 4-9x matters more than the 11-19%; operators who want xz's default size set 6.
 */
export const DEFAULT_PRESET = 1;

export interface CompressOptions {
  threads?: number; // default os.availableParallelism()
  blockSize?: number;
  preset?: number; // default DEFAULT_PRESET
  signal?: AbortSignal;
}
export interface CompressResult {
  bytesIn: number; bytesOut: number; sha256: string /* of the .xz written */; durationMs: number;
  /** How the work split up: blocks per kind, bytes per kind, and how holes were found. */
  detail?: { blocks: Record<'zero' | 'store' | 'lzma', number>; bytes: Record<'zero' | 'store' | 'lzma', number>; extents: 'seek_data' | 'none'; blockSize: number };
  /** Every block as written, for verifyWritten (src/xz/verify.ts). */
  layout: BlockLayout[];
}

function intOpt(name: string, v: number | undefined, min: number, max: number, dflt: number): number {
  if (v === undefined) return dflt;
  if (!Number.isSafeInteger(v) || v < min || v > max) {
    throw new JrError('JR_E_XZ', `Expected \`${name}\` to be an integer from ${min} to ${max}, got ${String(v)}`);
  }
  return v;
}

/** Default block size: ~4 blocks per thread for small data (so all cores work), at most 3 x dict like xz -T. */
export function defaultBlockSize(dataBytes: number, threads: number, preset: number): number {
  const MiB = 1 << 20;
  const max = Math.max(MiB, 3 * PRESET_DICT[preset]!);
  const want = Math.ceil(dataBytes / (threads * 4) / MiB) * MiB;
  return Math.min(max, Math.max(MiB, want));
}

/** Compress src to dst (dst written directly; caller handles temp names/rename/fsync). On failure dst is removed. */
export async function compressFile(src: string, dst: string, opts: CompressOptions = {}): Promise<CompressResult> {
  const started = performance.now();
  const threads = intOpt('threads', opts.threads, 1, 1024, availableParallelism());
  const preset = intOpt('preset', opts.preset, 0, 9, DEFAULT_PRESET);
  const userBlockSize = opts.blockSize === undefined ? undefined : intOpt('blockSize', opts.blockSize, 4096, 1 << 30, 0);
  const live = new Set<XzProcess>();
  const ctx: EncodeContext = { preset, live };
  let window: BlockWindow | undefined;
  const killAll = (): void => { for (const p of live) p.child.kill('SIGKILL'); };
  opts.signal?.addEventListener('abort', killAll, { once: true });
  let inFh: FileHandle | undefined;
  let outFh: FileHandle | undefined;
  try {
    const aborted = (): void => {
      if (opts.signal?.aborted) throw new JrError('JR_E_XZ', `compressing ${src}: aborted`, { cause: opts.signal.reason });
    };
    aborted();
    inFh = await open(src, 'r');
    const st = await inFh.stat();
    if (!st.isFile()) throw new JrError('JR_E_XZ', `${src}: not a regular file`);
    const extents = await dataExtents(src, st.size);
    const dataBytes = extents.ranges.reduce((n, [s, e]) => n + e - s, 0);
    const blockSize = userBlockSize ?? defaultBlockSize(dataBytes, threads, preset);
    outFh = await open(dst, 'w');
    const out = new HashingWriter(outFh);
    await out.write([streamHeader()]);
    // Output is written in order, so a slow block at the head holds back finished ones behind it.
    // The window is counted in pinned read-buffer bytes (2 x threads x blockSize), not in blocks:
    // cheap stored and zero blocks must not fill it and idle the compressors (measured: one core
    // idle for the last 60% of a run with a 4-block window), and it is what bounds memory.
    const pool = new BufferPool(blockSize);
    window = new BlockWindow(out, 2 * threads * blockSize, 64 * threads, (ab) => pool.give(ab));
    const sem = new Semaphore(threads);
    for await (const seg of segmentsOf(inFh, st.size, extents.ranges, pool)) {
      aborted();
      const job = seg.kind === 'lzma' ? sem.run(() => encodeSegment(seg, ctx)) : encodeSegment(seg, ctx);
      await window.push(job, seg.kind === 'zero' ? null : seg.data.buffer);
    }
    await window.flush();
    aborted();
    await out.write([indexAndFooter(window.layout.map((b) => b.record))]);
    await outFh.close();
    outFh = undefined;
    const detail = { blocks: { zero: 0, store: 0, lzma: 0 }, bytes: { zero: 0, store: 0, lzma: 0 }, extents: extents.method, blockSize };
    for (const b of window.layout) { detail.blocks[b.kind]++; detail.bytes[b.kind] += b.record.uncompressedSize; }
    return { bytesIn: st.size, bytesOut: out.pos, sha256: out.digest(), durationMs: performance.now() - started, detail, layout: window.layout };
  } catch (e) {
    killAll();
    await window?.settle();
    await outFh?.close().catch(() => {});
    if (outFh) await rm(dst, { force: true });
    // Killed children report SIGKILL; the caller wants to know it was their abort.
    if (opts.signal?.aborted) throw new JrError('JR_E_XZ', `compressing ${src}: aborted`, { cause: opts.signal.reason });
    if (isJrError(e, 'JR_E_XZ')) throw e;
    throw new JrError('JR_E_XZ', `compressing ${src} to ${dst} failed: ${messageOf(e)}`, { cause: e });
  } finally {
    opts.signal?.removeEventListener('abort', killAll);
    await inFh?.close().catch(() => {});
  }
}
