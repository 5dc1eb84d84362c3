// dataExtents: SEEK_DATA through the perl helper, with small holes joined so that its output stays
// bounded however a guest has punched holes into its disk.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dataExtents } from '../../src/xz/extents.js';
import { writeSparse } from './xz-fixtures.js';

const KiB = 1024;
const MiB = 1024 * KiB;
let dir: string;

/** 4 KiB of data at each offset in `at`, holes elsewhere. */
function sparseFile(name: string, at: number[], size: number): Promise<string> {
  const b = Buffer.alloc(4 * KiB, 0x5a);
  return writeSparse(join(dir, name), at.map((off) => [off, b] as const), size);
}

beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'xz-extents-')); });
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

describe('dataExtents', () => {
  it('joins holes under the gap, keeps the others, and reports seek_data', async () => {
    // 4 KiB of data in every other 4 KiB for 16 MiB (2048 extents), then one more at 40 MiB.
    const pieces = Array.from({ length: 2048 }, (_, i) => i * 8 * KiB);
    const p = await sparseFile('comb', [...pieces, 40 * MiB], 64 * MiB);
    const joined = await dataExtents(p, 64 * MiB, MiB);
    expect(joined).toEqual({ method: 'seek_data', ranges: [[0, 16 * MiB - 4 * KiB], [40 * MiB, 40 * MiB + 4 * KiB]] });
    const fine = await dataExtents(p, 64 * MiB, 4 * KiB); // a 4 KiB hole is not under a 4 KiB gap
    expect(fine.method).toBe('seek_data');
    expect(fine.ranges.length).toBe(2049);
    expect(fine.ranges[1]).toEqual([8 * KiB, 12 * KiB]);
  });

  it('an empty file and a file of only holes have no data', async () => {
    expect(await dataExtents(await sparseFile('empty', [], 0), 0)).toEqual({ method: 'none', ranges: [] });
    expect(await dataExtents(await sparseFile('holes', [], 10 * MiB), 10 * MiB)).toEqual({ method: 'seek_data', ranges: [] });
  });

  it('falls back to "all data" when the helper fails', async () => {
    expect(await dataExtents(join(dir, 'missing'), 5 * MiB)).toEqual({ method: 'none', ranges: [[0, 5 * MiB]] });
  });
});
