// compressFile end to end: stock xz (and a second, independent decoder) must accept what we write
// and restore it byte-identical, at block-size edges, with holes anywhere, and for empty files.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync, createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { createHash, randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { run } from '../../src/proc.js';
import { compressFile, DEFAULT_PRESET, type CompressOptions } from '../../src/xz/compress.js';
import { decompressFile } from '../../src/xz/decompress.js';
import { isJrError } from '../../src/errors.js';
import { writeSparse } from './xz-fixtures.js';

const MiB = 1 << 20;
let dir: string;
let n = 0;
const sha = async (p: string): Promise<string> => createHash('sha256').update(await readFile(p)).digest('hex');

function text(len: number, seed: number): Buffer {
  const out = Buffer.alloc(len);
  let x = seed;
  for (let i = 0; i < len; i++) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    out[i] = i % 61 === 60 ? 10 : 97 + ((x >> 16) % 12);
  }
  return out;
}

/** Write a file from [offset, bytes] pieces and a final size (the rest are holes). */
function makeFile(pieces: [number, Buffer][], size: number): Promise<string> {
  return writeSparse(join(dir, 'src', `f${n++}`), pieces, size);
}

/** Compress, then check with xz -t, xz -d, decompressFile; returns the xz -lvv robot block lines. */
async function roundTrip(src: string, opts: CompressOptions = { threads: 2, blockSize: MiB }): Promise<string[]> {
  const xzPath = join(dir, 'out', basename(src) + '.xz');
  const r = await compressFile(src, xzPath, opts);
  expect(r.bytesIn).toBe((await stat(src)).size);
  expect(r.bytesOut).toBe((await stat(xzPath)).size);
  expect(r.sha256).toBe(await sha(xzPath));
  await run('xz', ['-t', xzPath]);
  await run('xz', ['-d', '-k', '-f', xzPath]); // writes out/<name>
  expect(await sha(join(dir, 'out', basename(src)))).toBe(await sha(src));
  const ours = join(dir, 'out', basename(src) + '.ours');
  const d = await decompressFile(xzPath, ours, { sizeCap: r.bytesIn });
  expect(d.bytesOut).toBe(r.bytesIn);
  expect(await sha(ours)).toBe(await sha(src));
  const list = await run('xz', ['--robot', '-lvv', xzPath]);
  const blocks = list.stdout.split('\n').filter((l) => l.startsWith('block\t'));
  // Every block carries both sizes in its header (flags "cu"): what lets xz -T decode in parallel.
  for (const b of blocks) expect(b.split('\t')).toContain('cu');
  return blocks;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'xz-comp-'));
  await mkdir(join(dir, 'src'));
  await mkdir(join(dir, 'out'));
});
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

describe('compressFile round trips', () => {
  it('an empty file', async () => {
    const blocks = await roundTrip(await makeFile([], 0));
    expect(blocks).toHaveLength(0);
  });

  it('a file of only holes (odd size), as zero blocks, restored sparse', async () => {
    const src = await makeFile([], 5 * MiB + 123);
    await roundTrip(src);
    const st = await stat(join(dir, 'out', basename(src) + '.ours'));
    expect(st.blocks).toBe(0);
  });

  it('sizes exactly at and one byte either side of the block size, random and text', async () => {
    for (const size of [MiB - 1, MiB, MiB + 1, 2 * MiB - 1, 2 * MiB + 1]) {
      await roundTrip(await makeFile([[0, randomBytes(size)]], size));
      await roundTrip(await makeFile([[0, text(size, size)]], size));
    }
  });

  it('no holes at all: text, random and zero pages interleaved', async () => {
    const parts = [text(700_000, 1), randomBytes(1_300_000), Buffer.alloc(1_500_000), text(300_001, 2)];
    const all = Buffer.concat(parts);
    const src = join(dir, 'src', 'dense');
    await writeFile(src, all);
    const blocks = await roundTrip(src);
    expect(blocks.length).toBeGreaterThan(2);
  });

  it('an image that ends in a hole, with data at unaligned offsets, and a mostly-hole image restored sparse', async () => {
    const src = await makeFile([[12_345, text(200_000, 3)], [7 * MiB + 1, randomBytes(3000)], [40 * MiB - 5, text(10, 4)]], 90 * MiB + 77);
    const blocks = await roundTrip(src, { threads: 2 });
    expect(blocks.length).toBeGreaterThan(3); // the 50 MiB tail hole alone needs three zero blocks
    const st = await stat(join(dir, 'out', basename(src) + '.ours'));
    expect(st.size).toBe(90 * MiB + 77);
    expect(st.blocks * 512).toBeLessThan(MiB);
  });

  it('one thread and a tiny block size give the same bytes back', async () => {
    const src = await makeFile([[0, text(300_000, 5)], [MiB, randomBytes(200_000)]], 3 * MiB);
    await roundTrip(src, { threads: 1, blockSize: 64 * 1024, preset: 1 });
  });

  it('the preset reaches the encoder: dictionary capped by it, the default is DEFAULT_PRESET, 6 is smaller', async () => {
    // 12 MiB of text in one 12 MiB block: the dictionary is the preset's (0: 256 KiB, 1: 1 MiB, 6: 8 MiB).
    const src = await makeFile([[0, text(12 * MiB, 9)]], 12 * MiB);
    const dicts = async (o: CompressOptions): Promise<{ dicts: string[]; bytes: number }> => {
      const blocks = await roundTrip(src, { threads: 1, blockSize: 12 * MiB, ...o });
      return { dicts: [...new Set(blocks.map((b) => b.split('\t').at(-1)!))], bytes: (await stat(join(dir, 'out', basename(src) + '.xz'))).size };
    };
    expect(DEFAULT_PRESET).toBe(1);
    const p0 = await dicts({ preset: 0 });
    const dflt = await dicts({});
    const p6 = await dicts({ preset: 6 });
    expect(p0.dicts).toEqual(['--lzma2=dict=256KiB']);
    expect(dflt.dicts).toEqual(['--lzma2=dict=1MiB']);
    expect(p6.dicts).toEqual(['--lzma2=dict=8MiB']);
    expect(p6.bytes).toBeLessThan(dflt.bytes);
  });
});

describe('compressFile output is standard', () => {
  it('decodes with an independent decoder (xz-embedded via xz-decompress)', async () => {
    const src = await makeFile([[0, text(500_000, 6)], [2 * MiB, randomBytes(700_000)]], 6 * MiB);
    const xzPath = join(dir, 'out', 'indep.xz');
    await compressFile(src, xzPath, { threads: 2, blockSize: MiB });
    const mod = await import('xz-decompress') as unknown as { XzReadableStream?: unknown; default?: { XzReadableStream: unknown } };
    const Xz = (mod.XzReadableStream ?? mod.default!.XzReadableStream) as new (s: ReadableStream) => ReadableStream<Uint8Array>;
    const h = createHash('sha256');
    for await (const c of new Xz(Readable.toWeb(createReadStream(xzPath)) as ReadableStream) as unknown as AsyncIterable<Uint8Array>) h.update(c);
    expect(h.digest('hex')).toBe(await sha(src));
  });
});

describe('compressFile failures', () => {
  it('rejects bad options and a missing source with JR_E_XZ', async () => {
    const src = await makeFile([], 10);
    for (const o of [{ threads: 0 }, { preset: 10 }, { blockSize: 100 }]) {
      const e = await compressFile(src, join(dir, 'out', 'x.xz'), o).catch((x: unknown) => x);
      expect(isJrError(e, 'JR_E_XZ')).toBe(true);
      expect((e as Error).message).toMatch(/^Expected `/);
    }
    const e = await compressFile(join(dir, 'nope'), join(dir, 'out', 'y.xz')).catch((x: unknown) => x);
    expect(isJrError(e, 'JR_E_XZ')).toBe(true);
    expect(existsSync(join(dir, 'out', 'y.xz'))).toBe(false);
  });

  it('an abort mid-way kills the encoders and removes dst', async () => {
    // Preset 9 on 8 MiB of text: seconds of work, so the abort at 100 ms lands mid-way (at the
    // default preset 1 the whole job can finish before it, as it did once in CI).
    const src = await makeFile([[0, text(8 * MiB, 7)]], 8 * MiB);
    const ac = new AbortController();
    const dst = join(dir, 'out', 'aborted.xz');
    const p = compressFile(src, dst, { threads: 2, blockSize: MiB, preset: 9, signal: ac.signal });
    setTimeout(() => ac.abort(), 100);
    const e = await p.catch((x: unknown) => x);
    expect(isJrError(e, 'JR_E_XZ')).toBe(true);
    expect((e as Error).message).toMatch(/aborted/);
    expect(existsSync(dst)).toBe(false);
  });
});
