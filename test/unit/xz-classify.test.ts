// classify: segments tile the input in order; zeros, random and text land where they should.
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { classify, entropy, UNIT, type Segment } from '../../src/xz/classify.js';
import { parseRanges } from '../../src/xz/extents.js';

const MiB = 1 << 20;
function text(n: number): Buffer {
  const words = ['alpha', 'beta', 'gamma', 'delta', 'build', 'ok', 'error', 'link'];
  let s = '';
  for (let i = 0; s.length < n; i++) s += words[(i * 7 + (i >> 3)) % words.length] + (i % 11 ? ' ' : '\n');
  return Buffer.from(s.slice(0, n));
}
const len = (s: Segment): number => (s.kind === 'zero' ? s.length : s.data.length);

function expectTiling(segs: Segment[], offset: number, total: number): void {
  let at = offset;
  for (const s of segs) { expect(s.offset).toBe(at); at += len(s); }
  expect(at).toBe(offset + total);
}

describe('entropy', () => {
  it('is ~8 for random bytes, 0 for a constant, 1 for two equally common values', () => {
    expect(entropy(randomBytes(UNIT))).toBeGreaterThan(7.99);
    expect(entropy(Buffer.alloc(1000, 7))).toBe(0);
    expect(entropy(Buffer.from([0, 1, 0, 1]))).toBe(1);
  });
  it('counts exactly the bytes in [s, e), whatever their alignment (the loop takes four at a time)', () => {
    const naive = (b: Uint8Array): number => {
      const h = new Map<number, number>();
      for (const x of b) h.set(x, (h.get(x) ?? 0) + 1);
      let bits = 0;
      for (const c of h.values()) bits -= c * Math.log2(c / b.length);
      return bits / b.length;
    };
    const buf = Buffer.concat([text(300), randomBytes(200)]);
    for (const [s, e] of [[0, 500], [1, 500], [3, 498], [5, 6], [7, 10], [250, 263], [499, 500]] as const) {
      expect(entropy(buf, s, e)).toBeCloseTo(naive(buf.subarray(s, e)), 12);
    }
    expect(entropy(buf, 9, 9)).toBe(0);
  });
});

describe('classify', () => {
  it('finds zero, random and text runs, tiling the buffer', () => {
    const buf = Buffer.concat([text(MiB), Buffer.alloc(2 * MiB), randomBytes(MiB), text(MiB / 2)]);
    const segs = classify(buf, 4 * MiB);
    expectTiling(segs, 4 * MiB, buf.length);
    expect(segs.map((s) => [s.kind, len(s)])).toEqual([
      ['lzma', MiB], ['zero', 2 * MiB], ['store', MiB], ['lzma', MiB / 2],
    ]);
    const store = segs[2] as { data: Buffer };
    expect(store.data.equals(buf.subarray(3 * MiB, 4 * MiB))).toBe(true);
  });

  it('keeps short zero runs and short random runs inside the compressed data', () => {
    const buf = Buffer.concat([text(100_000), Buffer.alloc(512 * 1024), randomBytes(UNIT), text(100_000)]);
    const segs = classify(buf, 0);
    expectTiling(segs, 0, buf.length);
    expect(segs.map((s) => s.kind)).toEqual(['lzma']);
  });

  it('does not store random data that repeats (LZMA would find the copy)', () => {
    const r = randomBytes(MiB);
    const segs = classify(Buffer.concat([r, r]), 0);
    expect(segs.map((s) => s.kind)).toEqual(['lzma']);
  });

  it('aligns units to the absolute offset, not to the buffer start', () => {
    const buf = randomBytes(3 * MiB);
    const segs = classify(buf, 1000); // first and last partial units are judged "compressible"
    expectTiling(segs, 1000, buf.length);
    const store = segs.find((s) => s.kind === 'store')!;
    expect(store.offset % UNIT).toBe(0);
    expect(len(store) % UNIT).toBe(0);
  });

  it('handles an empty buffer and an all-zero one', () => {
    expect(classify(Buffer.alloc(0), 0)).toEqual([]);
    expect(classify(Buffer.alloc(3 * MiB + 5), 0).map((s) => [s.kind, len(s)])).toEqual([['zero', 3 * MiB + 5]]);
  });
});

describe('extent parsing', () => {
  it('parses, clips to the size and rejects disorder', () => {
    expect(parseRanges('0 4096\n8192 20000\n', 10000)).toEqual([[0, 4096], [8192, 10000]]);
    expect(parseRanges('', 5)).toEqual([]);
    expect(parseRanges('8192 9000\n0 4096\n', 10000)).toBeNull();
    expect(parseRanges('garbage', 10)).toBeNull();
  });
});
