// verifyWritten: our own output is checked before the job's work image is deleted. Each part of
// the file (data blocks, zero blocks, header, index) must catch damage on its own.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFile, mkdtemp, open, rm, truncate } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compressFile, type CompressResult } from '../../src/xz/compress.js';
import { verifyWritten } from '../../src/xz/verify.js';
import { isJrError } from '../../src/errors.js';
import { writeSparse } from './xz-fixtures.js';

const MiB = 1 << 20;
let dir: string;
let xz: string;
let r: CompressResult;

function text(n: number): Buffer {
  let s = '';
  for (let i = 0; s.length < n; i++) s += `line ${i} of the build log: ok ${(i * 7919) % 1000}\n`;
  return Buffer.from(s.slice(0, n));
}

/** Offset in the file of the k-th block of `kind` (k from 0). */
function offsetOf(kind: string, k: number): number {
  let pos = 12;
  for (const b of r.layout) {
    if (b.kind === kind && k-- === 0) return pos;
    pos += b.size;
  }
  throw new Error(`no block ${kind} #${k}`);
}

/** A copy of the good file with one byte flipped at `pos`. */
async function damaged(name: string, pos: number): Promise<string> {
  const p = join(dir, name);
  await copyFile(xz, p);
  const fh = await open(p, 'r+');
  const b = Buffer.alloc(1);
  await fh.read(b, 0, 1, pos);
  b[0] = b[0]! ^ 0x40;
  await fh.write(b, 0, 1, pos);
  await fh.close();
  return p;
}

async function expectFailure(p: string, re: RegExp): Promise<void> {
  const e = await verifyWritten(p, r).then(() => null, (x: unknown) => x);
  expect(isJrError(e, 'JR_E_XZ'), String(e)).toBe(true);
  expect((e as Error).message).toMatch(re);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'xz-verify-'));
  const src = await writeSparse(join(dir, 'src.img'), [
    [0, text(2 * MiB)], // lzma
    [4 * MiB, randomBytes(2 * MiB)], // stored, two blocks of 1 MiB
    [100 * MiB, text(MiB)], // after a 96 MiB hole: four 24 MiB zero blocks
  ], 160 * MiB);
  xz = join(dir, 'good.xz');
  r = await compressFile(src, xz, { threads: 2, blockSize: MiB });
  expect(r.layout.filter((b) => b.kind === 'zero' && b.record.uncompressedSize === 24 * MiB).length).toBeGreaterThan(2);
  expect(r.layout.some((b) => b.kind === 'store')).toBe(true);
});
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

describe('verifyWritten', () => {
  it('accepts what compressFile wrote', async () => {
    await verifyWritten(xz, r);
  });

  it('catches a damaged LZMA block (decoded by xz)', async () => {
    await expectFailure(await damaged('lzma.xz', offsetOf('lzma', 0) + 200), /a block does not decode/);
  });

  it('catches a damaged stored block (its CRC32, checked by xz)', async () => {
    await expectFailure(await damaged('store.xz', offsetOf('store', 0) + 5000), /a block does not decode/);
  });

  it('catches damage in a zero block that is not the first of its length (byte comparison)', async () => {
    const second = r.layout.filter((b) => b.kind === 'zero' && b.record.uncompressedSize === 24 * MiB).length > 1;
    expect(second).toBe(true);
    let k = 0; let seen = 0;
    for (const b of r.layout) { if (b.kind === 'zero') { if (b.record.uncompressedSize === 24 * MiB && ++seen === 2) break; k++; } }
    await expectFailure(await damaged('zero.xz', offsetOf('zero', k) + 40), /zero block at offset \d+ differs/);
  });

  it('catches a damaged stream header, index and footer', async () => {
    await expectFailure(await damaged('head.xz', 7), /stream header differs/);
    const end = 12 + r.layout.reduce((n, b) => n + b.size, 0);
    await expectFailure(await damaged('index.xz', end + 2), /index or stream footer differs/);
    await expectFailure(await damaged('footer.xz', r.bytesOut - 1), /index or stream footer differs/);
  });

  it('catches two blocks swapped on disk (each sound on its own): the sha256 written differs', async () => {
    const a = offsetOf('store', 0);
    const b = offsetOf('store', 1);
    const n = r.layout.find((x) => x.kind === 'store')!.size;
    expect(b - a).toBe(n); // adjacent, same size
    const p = join(dir, 'swapped.xz');
    await copyFile(xz, p);
    const fh = await open(p, 'r+');
    const x = Buffer.alloc(n); const y = Buffer.alloc(n);
    await fh.read(x, 0, n, a); await fh.read(y, 0, n, b);
    await fh.write(y, 0, n, a); await fh.write(x, 0, n, b);
    await fh.close();
    await expectFailure(p, /sha256 differs from the one computed while writing it/);
  });

  it('refuses a layout that does not cover the source in order', async () => {
    const [first, second, ...rest] = r.layout;
    const e1 = await verifyWritten(xz, { ...r, layout: [second!, first!, ...rest] }).catch((x: unknown) => x);
    expect((e1 as Error).message).toMatch(/do not follow the source in order/);
    const e2 = await verifyWritten(xz, { ...r, bytesIn: r.bytesIn + 1 }).catch((x: unknown) => x);
    expect((e2 as Error).message).toMatch(/cover \d+ bytes of a \d+-byte source/);
  });

  it('catches a truncated or extended file, and a missing one', async () => {
    const short = join(dir, 'short.xz');
    await copyFile(xz, short);
    await truncate(short, r.bytesOut - 100);
    await expectFailure(short, /is \d+ bytes, expected \d+ from its blocks/);
    const long = join(dir, 'long.xz');
    await copyFile(xz, long);
    await truncate(long, r.bytesOut + 4);
    await expectFailure(long, /is \d+ bytes, expected/);
    await expectFailure(join(dir, 'nope.xz'), /verifying .* failed: .*ENOENT/);
  });
});
