// crc32Zeros must agree with zlib run over real zero bytes, for any length and starting value.
import { describe, expect, it } from 'vitest';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { crc32Zeros } from '../../src/xz/crc32.js';

describe('crc32Zeros', () => {
  it('equals zlib.crc32 over zero buffers', () => {
    const lengths = [0, 1, 2, 3, 4, 5, 7, 8, 255, 256, 4095, 4096, 4097, 65536, 1 << 20, (1 << 21) + 3, 7_777_777];
    for (const n of lengths) {
      for (const prev of [0, 1, 0xffffffff, 0x12345678]) {
        expect(crc32Zeros(n, prev)).toBe(zlibCrc32(Buffer.alloc(n), prev) >>> 0);
      }
    }
  });

  it('composes: zeros(a) then zeros(b) == zeros(a+b)', () => {
    const a = 123_456, b = 987_654_321;
    expect(crc32Zeros(b, crc32Zeros(a))).toBe(crc32Zeros(a + b));
  });

  it('rejects negative or fractional lengths', () => {
    expect(() => crc32Zeros(-1)).toThrow();
    expect(() => crc32Zeros(1.5)).toThrow();
  });
});
