// Container bytes: VLI, dictionary property, block header, index and footer, checked field by field.
import { describe, expect, it } from 'vitest';
import { crc32 } from 'node:zlib';
import { blockParts, blockHeader, indexAndFooter, lzma2DictProp, lzma2DictSize, streamHeader, vli } from '../../src/xz/format.js';

function readVli(b: Buffer, at: number): [number, number] {
  let v = 0;
  for (let i = 0; i < 9; i++) {
    const x = b[at + i]!;
    v += (x & 0x7f) * 2 ** (7 * i);
    if (!(x & 0x80)) return [v, at + i + 1];
  }
  throw new Error('vli too long');
}

describe('vli', () => {
  it('round-trips values at 7-bit boundaries and beyond 2^32', () => {
    for (const n of [0, 1, 127, 128, 16383, 16384, 2 ** 32 + 5, 2 ** 53 - 1]) {
      const b = vli(n);
      expect(readVli(b, 0)).toEqual([n, b.length]);
      expect(b[b.length - 1]! & 0x80).toBe(0);
    }
    expect(vli(127).length).toBe(1);
    expect(vli(128).length).toBe(2);
    expect(() => vli(-1)).toThrow();
  });
});

describe('LZMA2 dictionary property', () => {
  it('rounds up to the next representable size', () => {
    for (const d of [1, 4096, 4097, 6144, 6145, 65536, 8 << 20, (8 << 20) + 1, 3 << 20]) {
      const p = lzma2DictProp(d);
      expect(lzma2DictSize(p)).toBeGreaterThanOrEqual(d);
      if (p > 0) expect(lzma2DictSize(p - 1)).toBeLessThan(Math.max(d, 4097));
    }
    expect(lzma2DictSize(lzma2DictProp(8 << 20))).toBe(8 << 20);
  });
});

describe('headers', () => {
  it('stream header: magic, CRC32 flags, CRC of the flags', () => {
    const h = streamHeader();
    expect(h.length).toBe(12);
    expect([...h.subarray(0, 6)]).toEqual([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);
    expect(h.readUInt32LE(8)).toBe(crc32(h.subarray(6, 8)));
  });

  it('block header: size byte, both sizes, one LZMA2 filter, padded, CRC32 over the rest', () => {
    for (const [c, u] of [[5, 1], [300, 2 ** 34], [2 ** 20, 2 ** 26]] as const) {
      const h = blockHeader(c, u, 22);
      expect(h.length % 4).toBe(0);
      expect((h[0]! + 1) * 4).toBe(h.length);
      expect(h[1]).toBe(0xc0);
      const [cs, i1] = readVli(h, 2);
      const [us, i2] = readVli(h, i1);
      expect([cs, us]).toEqual([c, u]);
      expect([...h.subarray(i2, i2 + 3)]).toEqual([0x21, 0x01, 22]);
      expect(h.subarray(i2 + 3, h.length - 4).every((x) => x === 0)).toBe(true);
      expect(h.readUInt32LE(h.length - 4)).toBe(crc32(h.subarray(0, h.length - 4)));
    }
  });

  it('block: data padded to 4, CRC32 check last, record counts header + data + check', () => {
    const data = Buffer.from([1, 2, 3, 4, 5]);
    const { parts, size, record } = blockParts([data.subarray(0, 2), data.subarray(2)], 99, 0xdeadbeef, 0);
    const bytes = Buffer.concat(parts);
    expect(bytes.length).toBe(size);
    expect(bytes.length % 4).toBe(0);
    expect(bytes.subarray(blockHeader(5, 99, 0).length, blockHeader(5, 99, 0).length + 5).equals(data)).toBe(true);
    expect(bytes.readUInt32LE(bytes.length - 4)).toBe(0xdeadbeef);
    expect(record).toEqual({ unpaddedSize: blockHeader(5, 99, 0).length + 5 + 4, uncompressedSize: 99 });
  });

  it('index + footer: records, padding, CRCs, backward size', () => {
    const recs = [{ unpaddedSize: 30, uncompressedSize: 1 << 20 }, { unpaddedSize: 1001, uncompressedSize: 5 }];
    const b = indexAndFooter(recs);
    const footer = b.subarray(b.length - 12);
    const index = b.subarray(0, b.length - 12);
    expect(index.length % 4).toBe(0);
    expect(index[0]).toBe(0);
    let [n, at] = readVli(index, 1);
    expect(n).toBe(2);
    for (const r of recs) {
      let v: number;
      [v, at] = readVli(index, at); expect(v).toBe(r.unpaddedSize);
      [v, at] = readVli(index, at); expect(v).toBe(r.uncompressedSize);
    }
    expect(index.readUInt32LE(index.length - 4)).toBe(crc32(index.subarray(0, index.length - 4)));
    expect((footer.readUInt32LE(4) + 1) * 4).toBe(index.length);
    expect(footer.readUInt32LE(0)).toBe(crc32(footer.subarray(4, 10)));
    expect([...footer.subarray(8)]).toEqual([0x00, 0x01, 0x59, 0x5a]);
  });
});
