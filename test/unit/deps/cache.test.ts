import { mkdir, readdir, rm, truncate, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { mkdtemp } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { listCache, pruneCache } from '../../../src/deps/cache.js';
import { ext4LayerBytes, layerKey } from '../../../src/deps/layer.js';

let dir = '';
afterEach(async () => { if (dir) await rm(dir, { recursive: true, force: true }); });
const hex = (c: string): string => c.repeat(64);
const ago = (min: number): Date => new Date(Date.now() - min * 60_000);
/** A size unit that is a whole number of blocks on any filesystem /tmp may be on. */
const U = 64 * 1024;

async function entry(kind: 'layer' | 'deb', id: string, bytes: number, usedMinAgo: number, format = 'qcow2'): Promise<void> {
  const sub = path.join(dir, kind === 'layer' ? 'layers' : 'debs');
  await mkdir(sub, { recursive: true });
  const f = path.join(sub, `${id}.${kind === 'layer' ? format : 'deb'}`);
  await writeFile(f, Buffer.alloc(bytes, 1));
  if (kind === 'layer') await writeFile(path.join(sub, `${id}.json`), JSON.stringify({ packages: ['dwz:amd64=0.15-1'] }));
  await utimes(f, ago(usedMinAgo), ago(usedMinAgo));
}

describe('deps cache', () => {
  it('evicts least recently used entries down to the bound, keeping recently used ones', async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'jr-deps-cache-'));
    await entry('layer', hex('a'), 4 * U, 600);
    await entry('deb', hex('b'), 3 * U, 300);
    await entry('layer', hex('c'), 2 * U, 120);
    await entry('deb', hex('d'), 5 * U, 1); // just used: kept even though it is the biggest
    expect((await listCache(dir)).map((e) => e.id[0])).toEqual(['a', 'b', 'c', 'd']);
    const gone = await pruneCache(dir, 8 * U);
    expect(gone.map((e) => e.id[0])).toEqual(['a', 'b']);
    expect((await readdir(path.join(dir, 'layers'))).sort()).toEqual([`${hex('c')}.json`, `${hex('c')}.qcow2`]);
    expect(await pruneCache(dir, 8 * U)).toEqual([]);
    // Under the bound only the in-use grace keeps d; c goes.
    expect((await pruneCache(dir, 1)).map((e) => e.id[0])).toEqual(['c']);
  });

  it('lists and evicts unshare layers (.ext4) with their record and log, like qcow2 ones', async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'jr-deps-cache-'));
    await entry('layer', hex('e'), 3 * U, 600, 'ext4');
    await writeFile(path.join(dir, 'layers', `${hex('e')}.log`), 'install log');
    await entry('layer', hex('f'), 1 * U, 300);
    const list = await listCache(dir);
    expect(list.map((e) => [e.id[0], path.extname(e.files[0]!)])).toEqual([['e', '.ext4'], ['f', '.qcow2']]);
    expect((await pruneCache(dir, 2 * U)).map((e) => e.id[0])).toEqual(['e']);
    expect((await readdir(path.join(dir, 'layers'))).sort()).toEqual([`${hex('f')}.json`, `${hex('f')}.qcow2`]);
  });

  it('counts a sparse layer by the blocks it holds, not its apparent size', async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'jr-deps-cache-'));
    // An unshare layer: a >= 1 GiB ext4 image, almost all holes.
    await entry('layer', hex('5'), U, 600, 'ext4');
    const f = path.join(dir, 'layers', `${hex('5')}.ext4`);
    await truncate(f, 1024 * 1024 * 1024);
    await utimes(f, ago(600), ago(600));
    await entry('deb', hex('7'), U, 600);
    const [layer, deb] = await listCache(dir);
    expect(layer!.id[0]).toBe('5');
    expect(layer!.bytes).toBeGreaterThanOrEqual(U);
    expect(layer!.bytes).toBeLessThan(2 * U);
    expect(deb!.bytes).toBe(U);
    // 20 such layers fit in 20 * 2 units; counted at 1 GiB each, a 4-unit bound would evict this one.
    expect(await pruneCache(dir, 4 * U)).toEqual([]);
  });

  it('keys a layer by kind too: the VM\'s key is unchanged, an unshare layer\'s depends on its id base', () => {
    const a = { name: 'aa', version: '1', arch: 'amd64' };
    const vm = layerKey(hex('0'), [a]);
    expect(layerKey(hex('0'), [a], { isolation: 'vm' })).toBe(vm);
    const u1 = layerKey(hex('0'), [a], { isolation: 'unshare', idBase: 700000000 });
    expect(u1).not.toBe(vm);
    expect(u1).not.toBe(layerKey(hex('0'), [a], { isolation: 'unshare', idBase: 800000000 }));
    expect(ext4LayerBytes(0)).toBe(1024 * 1024 * 1024);
    expect(ext4LayerBytes(100 * 1024 * 1024)).toBe((800 + 512) * 1024 * 1024);
  });

  it('keys a layer by base and package set, not by the order apt listed them', () => {
    const a = { name: 'aa', version: '1', arch: 'amd64' };
    const b = { name: 'bb', version: '2', arch: 'all' };
    expect(layerKey(hex('0'), [a, b])).toBe(layerKey(hex('0'), [b, a]));
    expect(layerKey(hex('0'), [a, b])).not.toBe(layerKey(hex('1'), [a, b]));
    expect(layerKey(hex('0'), [a])).not.toBe(layerKey(hex('0'), [a, { ...b, version: '3' }]));
  });
});
