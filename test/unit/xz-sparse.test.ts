// SparseWriter: content identical to a plain write, zero pages left as holes, size set at the end.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, open, readFile, rm, stat } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SparseWriter, isZero, PAGE } from '../../src/xz/sparse.js';

let dir: string;
beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'xz-sparse-')); });
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

describe('isZero', () => {
  it('finds a single non-zero byte anywhere, including past 1 MiB', () => {
    const b = Buffer.alloc(3 * 1024 * 1024 + 5);
    expect(isZero(b)).toBe(true);
    b[b.length - 1] = 1;
    expect(isZero(b)).toBe(false);
    expect(isZero(b, 0, b.length - 1)).toBe(true);
    expect(isZero(b, b.length - 1)).toBe(false);
  });
});

describe('SparseWriter', () => {
  it('writes unaligned chunks byte-identical, leaving zero pages as holes', async () => {
    const total = 64 * PAGE * 16; // 4 MiB
    const expected = Buffer.alloc(total);
    randomBytes(5000).copy(expected, 7); // straddles the first page boundary
    // One byte before and two after a page boundary; fixed and non-zero (random bytes are zero 1 time in 256).
    Buffer.from([0xa5, 0x5a, 0xff]).copy(expected, 40 * PAGE - 1);
    const p = join(dir, 'a');
    const fh = await open(p, 'w');
    const w = new SparseWriter(fh);
    // Chunk sizes deliberately not page multiples.
    for (let off = 0; off < total;) {
      const n = Math.min(total - off, 12345 + (off % 7) * 1000);
      await w.write(expected.subarray(off, off + n));
      off += n;
    }
    expect(await w.finish()).toBe(total);
    await fh.close();
    expect((await readFile(p)).equals(expected)).toBe(true);
    const st = await stat(p);
    expect(st.size).toBe(total);
    expect(w.written).toBe(4 * PAGE); // pages 0, 1, 39, 40
    expect(st.blocks * 512).toBeLessThanOrEqual(8 * PAGE);
  });

  it('produces a file of only holes with the right size', async () => {
    const p = join(dir, 'b');
    const fh = await open(p, 'w');
    const w = new SparseWriter(fh);
    await w.write(Buffer.alloc(1024 * 1024 + 17));
    await w.finish();
    await fh.close();
    const st = await stat(p);
    expect(st.size).toBe(1024 * 1024 + 17);
    expect(st.blocks).toBe(0);
  });
});
