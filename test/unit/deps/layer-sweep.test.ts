// The start-up sweep of deps layer builds (sweepLayerBuilds): a build directory goes only while we
// hold its key's lock (never one a live process holds), and a layer an interrupted unshare install
// still has loop-mounted read-write (under the run's overlay) is unmounted with that run's scratch
// directory. Real mounts: root only.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { sweepLayerBuilds } from '../../../src/deps/layer.js';
import { procId } from '../../../src/procfs.js';
import { loopDevicesUnder, mountOverlay, mountLoop, unmountAll } from '../../../src/unshare/mounts.js';
import { makeEmptyExt4 } from '../../../src/unshare/stage.js';

const ROOT = process.getuid?.() === 0;
const key = (c: string): string => c.repeat(64);
const cleanup: string[] = [];
afterAll(async () => { for (const d of cleanup) { await unmountAll(d); await rm(d, { recursive: true, force: true }); } });

describe.skipIf(!ROOT)('sweepLayerBuilds', () => {
  it('removes dead builds (unmounting what their install left), keeps those whose lock a live process holds', async () => {
    const cache = await mkdtemp(path.join(os.tmpdir(), 'jr-layer-sweep-'));
    cleanup.push(cache);
    const layers = path.join(cache, 'layers');
    const build = async (name: string): Promise<string> => { const d = path.join(layers, name); await mkdir(d, { recursive: true }); await writeFile(path.join(d, 'install.log'), 'x'); return d; };
    const sleeper = spawn('sleep', ['60'], { stdio: 'ignore' });
    const live = await procId(sleeper.pid!);
    const dead = spawn('true');
    await new Promise((r) => dead.on('exit', r));
    const lock = (k: string, who: { pid: number; start: number }): Promise<void> => writeFile(path.join(layers, `${k}.lock`), `${who.pid} ${who.start}\n`);
    try {
      // A: an unshare install cut short: its layer mounted rw in the run's scratch, an overlay above. No lock file.
      const a = await build(`.build-${key('a')}-Ab12cd`);
      const layer = path.join(a, 'layer.ext4');
      await makeEmptyExt4(layer, 64 << 20, 0, 'deps-layer');
      const runDir = await mkdtemp(path.join(os.tmpdir(), `jobrunner-unshare-sweeptest${process.pid}-deps-`));
      cleanup.push(runDir);
      for (const d of ['scratch', 'lower', 'merged']) await mkdir(path.join(runDir, d));
      await mountLoop(layer, path.join(runDir, 'scratch'), false);
      for (const d of ['upper', 'work']) await mkdir(path.join(runDir, 'scratch', d));
      await mountOverlay([path.join(runDir, 'lower')], path.join(runDir, 'scratch', 'upper'), path.join(runDir, 'scratch', 'work'), path.join(runDir, 'merged'));
      await writeFile(path.join(runDir, 'merged', 'written'), 'by the install');
      expect(await loopDevicesUnder(a)).toHaveLength(1);
      // B: a live builder's (another service sharing the cache). C: its builder died, the lock is stale.
      const b = await build(`.build-${key('b')}-Ef34gh`);
      await lock(key('b'), live!);
      const c = await build(`.build-${key('c')}-Ij56kl`);
      await lock(key('c'), { pid: dead.pid!, start: 1 });
      // Older versions named 12 hex digits: D's key has a live lock, E's none.
      const d = await build(`.build-${'d'.repeat(12)}-Mn78op`);
      await lock(key('d'), live!);
      const e = await build(`.build-${'e'.repeat(12)}-Qr90st`);

      expect(await sweepLayerBuilds(cache)).toBe(3);
      expect([a, b, c, d, e].map((x) => existsSync(x))).toEqual([false, true, false, true, false]);
      expect(await loopDevicesUnder(cache)).toEqual([]);
      expect(await readFile('/proc/self/mountinfo', 'utf8')).not.toContain(runDir);
      expect(existsSync(runDir)).toBe(false);
      // The locks it took are gone again; the live holders' are untouched.
      expect((await readdir(layers)).filter((f) => f.endsWith('.lock')).sort()).toEqual([`${key('b')}.lock`, `${key('d')}.lock`]);
      expect(await sweepLayerBuilds(cache)).toBe(0);
    } finally {
      sleeper.kill('SIGKILL');
    }
  });

  it('is a no-op on a cache that does not exist yet', async () => {
    expect(await sweepLayerBuilds(path.join(os.tmpdir(), 'jr-no-such-cache-' + process.pid))).toBe(0);
  });
});
