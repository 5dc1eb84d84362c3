// An unshare layer is published only once it is released and clean (deps/layer.ts checkReleased):
// not attached to a loop device (still mounted, lazily detached or not), a cleanly unmounted ext4
// with no journal to replay, and nothing for e2fsck -fn to find. The install is a stand-in that
// reports success whatever it left behind, as runJobUnshare did when an unmount fell back to -l.
// Real loop mounts and e2fsprogs: root only.
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { CachedDeb } from '../../../src/deps/fetch.js';
import { ensureLayer, type InstallBoot } from '../../../src/deps/layer.js';
import type { BaseImage } from '../../../src/image/base.js';
import { run } from '../../../src/proc.js';
import { mountLoop, unmountAll } from '../../../src/unshare/mounts.js';

const ROOT = process.getuid?.() === 0;
const SBIN = { PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin` };
const dirs: string[] = [];
afterAll(async () => { for (const d of dirs) { await unmountAll(d); await rm(d, { recursive: true, force: true }); } });

const base = { name: 'stand-in', rootSha256: 'f'.repeat(64), root: '/nonexistent' } as BaseImage;
const debs: CachedDeb[] = [];

/** Build a layer whose install does `after` to the layer image and says it succeeded; what got published. */
async function buildWith(after: (layer: string, mnt: string) => Promise<void>): Promise<{ error: string | null; published: string[] }> {
  const cache = await mkdtemp(path.join(os.tmpdir(), 'jr-layer-publish-'));
  dirs.push(cache);
  const mnt = path.join(cache, 'mnt');
  await mkdir(mnt);
  const boot: InstallBoot = async (r) => {
    const layer = r.rootLayers[0]!;
    // What an install writes: upper/ in the layer, through the kernel.
    await mountLoop(layer, mnt, false);
    await mkdir(path.join(mnt, 'upper', 'usr', 'bin'), { recursive: true });
    await after(layer, mnt);
    return { end: 'exited', exitCode: 0, reason: 'the job succeeded' };
  };
  const error = await ensureLayer({ cacheDir: cache, base, debs, boot, kind: { isolation: 'unshare', idBase: 700000000 } })
    .then(() => null, (e: Error) => e.message);
  await unmountAll(mnt);
  const published = (await readdir(path.join(cache, 'layers'))).filter((f) => !f.startsWith('.') && !f.endsWith('.lock'));
  return { error, published };
}
const unmounted = async (mnt: string): Promise<void> => { await run('umount', [mnt], { env: SBIN }); };
const debugfsW = async (layer: string, mnt: string, cmd: string): Promise<void> => { await unmounted(mnt); await run('debugfs', ['-w', '-R', cmd, layer], { env: SBIN }); };

describe.skipIf(!ROOT)('publishing an unshare layer', () => {
  it('a cleanly unmounted layer is published with its record', async () => {
    const r = await buildWith((_l, mnt) => unmounted(mnt));
    expect(r.error).toBeNull();
    expect(r.published.map((f) => path.extname(f)).sort()).toEqual(['.ext4', '.json']);
  });

  it('a layer still mounted read-write is not', async () => {
    const r = await buildWith(async () => undefined);
    expect(r.error).toMatch(/not published: it is still attached to a loop device/);
    expect(r.published).toEqual([]);
  });

  it('nor one whose filesystem is marked not clean, has a journal to replay, or has errors', async () => {
    const dirty = await buildWith((l, m) => debugfsW(l, m, 'ssv state 0'));
    expect(dirty.error).toMatch(/filesystem is not clean \(dumpe2fs: state not clean/);
    const journal = await buildWith((l, m) => debugfsW(l, m, 'feature needs_recovery'));
    expect(journal.error).toMatch(/journal needs recovery/);
    const broken = await buildWith((l, m) => debugfsW(l, m, 'sif /upper links_count 7'));
    expect(broken.error).toMatch(/e2fsck -fn exited [1-9]/);
    expect([dirty, journal, broken].map((r) => r.published)).toEqual([[], [], []]);
  });
});
