// decompressFile against real xz output and damaged copies of it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, open, readFile, rm, stat, writeFile, copyFile, truncate } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../src/proc.js';
import { decompressFile } from '../../src/xz/decompress.js';
import { isJrError } from '../../src/errors.js';

const MiB = 1024 * 1024;
let dir: string;
let img: string; // 24 MiB: a few random extents in a sea of holes, ending in a hole
let imgXz: string;

const sha = async (p: string): Promise<string> => createHash('sha256').update(await readFile(p)).digest('hex');

async function expectXzError(p: Promise<unknown>, re: RegExp): Promise<void> {
  const e = await p.then(() => null, (x: unknown) => x);
  expect(isJrError(e, 'JR_E_XZ'), `expected JR_E_XZ, got ${String(e)}`).toBe(true);
  expect((e as Error).message).toMatch(re);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'xz-dec-'));
  img = join(dir, 'img');
  const fh = await open(img, 'w');
  for (const off of [0, 3 * MiB + 4096, 10 * MiB + 123]) await fh.write(randomBytes(200_000), 0, 200_000, off);
  await fh.truncate(24 * MiB);
  await fh.close();
  await run('xz', ['-k', '-T2', '--block-size=4MiB', img]);
  imgXz = img + '.xz';
});
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

describe('decompressFile', () => {
  it('restores the image byte-identical and sparse', async () => {
    const out = join(dir, 'out1');
    const r = await decompressFile(imgXz, out, { sizeCap: 24 * MiB });
    expect(r.bytesOut).toBe(24 * MiB);
    expect(await sha(out)).toBe(await sha(img));
    const st = await stat(out);
    expect(st.size).toBe(24 * MiB);
    expect(st.blocks * 512).toBeLessThan(2 * MiB); // ~600 KB of data, the rest holes
  });

  it('fails over the cap (declared by the index) and leaves no dst', async () => {
    const out = join(dir, 'out2');
    await writeFile(out, 'stale');
    await expectXzError(decompressFile(imgXz, out, { sizeCap: 24 * MiB - 1 }), /size cap of 25165823/);
    expect(existsSync(out)).toBe(false);
  });

  it('fails on a truncated file and leaves no dst', async () => {
    const bad = join(dir, 'trunc.xz');
    await copyFile(imgXz, bad);
    await truncate(bad, (await stat(imgXz)).size - 100);
    const out = join(dir, 'out3');
    await expectXzError(decompressFile(bad, out, { sizeCap: 1e9 }), /corrupt|truncated|Unexpected end/);
    expect(existsSync(out)).toBe(false);
  });

  it('fails on corrupt data inside a block and leaves no dst', async () => {
    const bad = join(dir, 'corrupt.xz');
    const b = await readFile(imgXz);
    for (let i = 0; i < 16; i++) b[Math.floor(b.length / 2) + i]! ^= 0x5a;
    await writeFile(bad, b);
    const out = join(dir, 'out4');
    await expectXzError(decompressFile(bad, out, { sizeCap: 1e9 }), /corrupt/);
    expect(existsSync(out)).toBe(false);
  });

  it('fails on input that is not .xz, or empty', async () => {
    const bad = join(dir, 'plain.xz');
    await writeFile(bad, 'just some text, not xz at all\n');
    await expectXzError(decompressFile(bad, join(dir, 'o5'), { sizeCap: 1e9 }), /index|format|small/);
    await writeFile(bad, '');
    await expectXzError(decompressFile(bad, join(dir, 'o5'), { sizeCap: 1e9 }), /\.xz/);
    expect(existsSync(join(dir, 'o5'))).toBe(false);
  });

  it('rejects a bad sizeCap before touching anything', async () => {
    await expectXzError(decompressFile(imgXz, join(dir, 'o6'), { sizeCap: -1 }), /Expected `sizeCap`/);
    expect(existsSync(join(dir, 'o6'))).toBe(false);
  });

  it('fails when the decoder would need more memory than memLimit', async () => {
    await expectXzError(decompressFile(imgXz, join(dir, 'o7'), { sizeCap: 1e9, memLimit: 1024 * 1024 }), /[Mm]emory/);
    expect(existsSync(join(dir, 'o7'))).toBe(false);
  });

  it('stops when the signal is aborted', async () => {
    const ac = new AbortController();
    ac.abort(new Error('stop'));
    await expectXzError(decompressFile(imgXz, join(dir, 'o8'), { sizeCap: 1e9, signal: ac.signal }), /abort/);
    expect(existsSync(join(dir, 'o8'))).toBe(false);
  });
});

describe('hostile input: an index that lies about the size', () => {
  // A block without sizes in its header decoding to 10 MiB, while the index claims 1000 bytes:
  // the declared size passes the cap check, so only counting the real output can stop it.
  async function lyingXz(): Promise<string> {
    const { streamHeader, indexAndFooter, lzma2DictProp } = await import('../../src/xz/format.js');
    const { zeroLzma2 } = await import('../../src/xz/lzma2.js');
    const { crc32, crc32Zeros } = await import('../../src/xz/crc32.js');
    const real = 10 * MiB;
    const raw = await zeroLzma2(real);
    const head = Buffer.from([2, 0x00, 0x21, 0x01, lzma2DictProp(4096), 0, 0, 0]);
    const hdr = Buffer.concat([head, Buffer.alloc(4)]);
    hdr.writeUInt32LE(crc32(head), 8);
    const check = Buffer.alloc(4);
    check.writeUInt32LE(crc32Zeros(real));
    const pad = Buffer.alloc((4 - (raw.length % 4)) % 4);
    const file = Buffer.concat([streamHeader(), hdr, raw, pad, check,
      indexAndFooter([{ unpaddedSize: hdr.length + raw.length + 4, uncompressedSize: 1000 }])]);
    const p = join(dir, 'lying.xz');
    await writeFile(p, file);
    return p;
  }

  it('is stopped at the cap by counting, leaving no dst', async () => {
    const p = await lyingXz();
    const out = join(dir, 'lying.out');
    await expectXzError(decompressFile(p, out, { sizeCap: MiB }), /decompresses past the size cap of 1048576/);
    expect(existsSync(out)).toBe(false);
  });

  it('is rejected by xz itself when the cap is not reached', async () => {
    await expectXzError(decompressFile(await lyingXz(), join(dir, 'lying2'), { sizeCap: 100 * MiB }), /corrupt/);
    expect(existsSync(join(dir, 'lying2'))).toBe(false);
  });
});
