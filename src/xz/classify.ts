// Splits file data into what it costs to compress: zero runs (a precomputed block), incompressible
// runs (stored as LZMA2 uncompressed chunks, as xz itself would end up doing after seconds of
// work: LZMA -6 runs at ~2 MB/s on random data), and the rest (real LZMA2 compression). Pure.
import { crc32 } from './crc32.js';
import { PAGE, isZero } from './sparse.js';

/** A piece of the source file and how it will be encoded. */
export type Segment =
  | { kind: 'zero'; offset: number; length: number }
  | { kind: 'store' | 'lzma'; offset: number; data: Buffer };

export interface ClassifyOptions {
  /** Zero runs shorter than this stay inside the data (a block boundary costs more than they do). */
  minZeroRun?: number;
  /** High-entropy runs shorter than this are compressed with their neighbours. */
  minStoreRun?: number;
  /** Order-0 entropy (bits/byte) at or above which a unit counts as incompressible. */
  storeEntropy?: number;
}

/** Size of the units judged for entropy (aligned to absolute file offsets). 32 KiB: random data
 *  measures 7.993-7.996 bits/byte at this size (3000 samples), safely above the 7.98 threshold,
 *  while file boundaries (4 KiB-aligned in ext4) waste at most 28 KiB of random data to LZMA. */
export const UNIT = 32768;
export const DEFAULTS: Required<ClassifyOptions> = { minZeroRun: 1 << 20, minStoreRun: 4 * UNIT, storeEntropy: 7.98 };

/** Order-0 (byte histogram) entropy of buf[s, e) in bits per byte. Four interleaved histograms:
 *  consecutive increments of one counter stall on each other; this runs 2.3x faster (21 vs 53 ms
 *  per 16 MiB here), and it is the main thread's largest cost on a sparse image. */
export function entropy(buf: Uint8Array, s = 0, e = buf.length): number {
  const n = e - s;
  if (n <= 0) return 0;
  const h = new Uint32Array(1024);
  let i = s;
  for (const e4 = s + (n & ~3); i < e4; i += 4) {
    h[buf[i]!]!++;
    h[256 + buf[i + 1]!]!++;
    h[512 + buf[i + 2]!]!++;
    h[768 + buf[i + 3]!]!++;
  }
  for (; i < e; i++) h[buf[i]!]!++;
  let bits = 0;
  for (let k = 0; k < 256; k++) {
    const c = h[k]! + h[256 + k]! + h[512 + k]! + h[768 + k]!;
    if (c) bits -= c * Math.log2(c / n);
  }
  return bits / n;
}

interface Run { start: number; end: number; flag: boolean }

/** Cut [0, len) at `unit` boundaries of the absolute offset `base`, flag each piece, merge runs. */
function runs(len: number, base: number, unit: number, flag: (s: number, e: number) => boolean): Run[] {
  const out: Run[] = [];
  for (let s = 0; s < len;) {
    const e = Math.min(len, s + unit - ((base + s) % unit));
    const f = flag(s, e);
    const last = out[out.length - 1];
    if (last && last.flag === f) last.end = e; else out.push({ start: s, end: e, flag: f });
    s = e;
  }
  return out;
}

/** Flip runs flagged true but shorter than `min` to false, then re-merge neighbours. */
function dropShort(rs: Run[], min: number): Run[] {
  const out: Run[] = [];
  for (const r of rs) {
    const flag = r.flag && r.end - r.start >= min;
    const last = out[out.length - 1];
    if (last && last.flag === flag) last.end = r.end; else out.push({ ...r, flag });
  }
  return out;
}

/** Whether any 4 KiB page among the given high-entropy units repeats (LZMA would find the copy). */
function hasRepeatedPages(buf: Buffer, base: number, units: Run[]): boolean {
  const seen = new Set<number>();
  for (const u of units) {
    for (let s = u.start; s < u.end;) {
      const e = Math.min(u.end, s + PAGE - ((base + s) % PAGE));
      if (e - s === PAGE) {
        const c = crc32(buf.subarray(s, e));
        if (seen.has(c)) return true;
        seen.add(c);
      }
      s = e;
    }
  }
  return false;
}

/** Split `buf` (the file's bytes at `offset`) into zero, store and lzma segments, in order. */
export function classify(buf: Buffer, offset: number, opts: ClassifyOptions = {}): Segment[] {
  const o = { ...DEFAULTS, ...opts };
  const out: Segment[] = [];
  const zeroRuns = dropShort(runs(buf.length, offset, PAGE, (s, e) => isZero(buf, s, e)), o.minZeroRun);
  for (const z of zeroRuns) {
    if (z.flag) { out.push({ kind: 'zero', offset: offset + z.start, length: z.end - z.start }); continue; }
    const base = offset + z.start;
    const span = buf.subarray(z.start, z.end);
    let units = runs(span.length, base, UNIT, (s, e) => e - s === UNIT && entropy(span, s, e) >= o.storeEntropy);
    // Repeated random data (a copied archive) is compressible after all; keep storing only when
    // nothing repeats, so storing never loses much against what xz would produce.
    if (hasRepeatedPages(span, base, units.filter((u) => u.flag))) units = units.map((u) => ({ ...u, flag: false }));
    for (const u of dropShort(units, o.minStoreRun)) {
      out.push({ kind: u.flag ? 'store' : 'lzma', offset: base + u.start, data: span.subarray(u.start, u.end) });
    }
  }
  return out;
}
