// A sandbox's cgroups (src/unshare/limits.ts): a missing hierarchy falls back to rlimits, but a
// group of the run's name that exists already fails the run (never a run without its limits), and
// a deps install's name (the whole layer key) fits cgroupfs and the start-up sweep. The real v1
// hierarchies: root only.
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { makeLimits, type Limits } from '../../../src/unshare/limits.js';
import { mountLoop, unmountAll } from '../../../src/unshare/mounts.js';
import { makeEmptyExt4 } from '../../../src/unshare/stage.js';
import { releaseLoopFiles, unshareInstallId, unshareJobId } from '../../../src/unshare/sweep.js';

const REQ = { memory: 256 << 20, cpus: 1, pids: 64 };
const made: Limits[] = [];
afterAll(async () => { for (const l of made) { await l.killAll(); await l.cleanup(); } });

describe('unshare cgroups', () => {
  it('falls back to rlimits where no hierarchy is there, and says so', async () => {
    const l = await makeLimits(`unit-${process.pid}-none`, REQ, path.join(os.tmpdir(), `jr-no-cgroup-root-${process.pid}`));
    expect(l.procsFiles).toEqual([]);
    expect(l.rlimits).toEqual([`--as=${REQ.memory}`, `--nproc=${REQ.pids}`]);
    expect(l.notes).toHaveLength(4);
  });

  it('install ids name the whole layer key: two keys sharing their first 12 digits differ', () => {
    const k1 = `${'a'.repeat(12)}${'0'.repeat(52)}`;
    const k2 = `${'a'.repeat(12)}${'1'.repeat(52)}`;
    expect(unshareInstallId('/spool/q', k1)).not.toBe(unshareInstallId('/spool/q', k2));
    expect(unshareInstallId('/spool/q', k1)).toBe(unshareJobId('/spool/q', `deps-${k1}`));
    expect(`jobrunner-unshare-${unshareInstallId('/spool/q', k1)}`).toHaveLength(100);
  });
});

const CGROUPS = process.getuid?.() === 0 && existsSync('/sys/fs/cgroup/memory/cgroup.procs');

describe.skipIf(!CGROUPS)('unshare cgroups (real v1 hierarchies)', () => {
  it('a group of the same name existing already is an error, and the existing one is left alone', async () => {
    const id = `unit-${process.pid}-twice`;
    const first = await makeLimits(id, REQ);
    made.push(first);
    expect(first.procsFiles.length).toBeGreaterThanOrEqual(3);
    await expect(makeLimits(id, REQ)).rejects.toThrow(/cgroup .*jobrunner-unshare-unit-\d+-twice exists already .*not running without its limits/);
    for (const f of first.procsFiles) expect(existsSync(f)).toBe(true);
    await first.cleanup();
    for (const f of first.procsFiles) expect(existsSync(path.dirname(f))).toBe(false);
  });

  it('a deps install\'s full-key name is a valid cgroup, and the layer sweep finds its groups by its scratch directory', async () => {
    const id = unshareInstallId(`/spool/unit-${process.pid}`, 'f'.repeat(64));
    const l = await makeLimits(id, REQ);
    made.push(l);
    expect(l.procsFiles.map((f) => path.basename(path.dirname(f)))).toEqual(l.procsFiles.map(() => `jobrunner-unshare-${id}`));
    // An install cut short: its layer loop-mounted in the run's scratch directory. releaseLoopFiles
    // takes the run's name from that directory (107 characters) and removes its groups with it.
    const cache = await mkdtemp(path.join(os.tmpdir(), 'jr-limits-layer-'));
    const run = await mkdtemp(path.join(os.tmpdir(), `jobrunner-unshare-${id}-`));
    try {
      expect(path.basename(run)).toHaveLength(107);
      const layer = path.join(cache, 'layer.ext4');
      await makeEmptyExt4(layer, 64 << 20, 0, 'deps-layer');
      await mkdir(path.join(run, 'scratch'));
      await mountLoop(layer, path.join(run, 'scratch'), false);
      expect(await releaseLoopFiles(cache)).toBeGreaterThanOrEqual(1 + l.procsFiles.length);
      expect(existsSync(run)).toBe(false);
      for (const f of l.procsFiles) expect(existsSync(path.dirname(f))).toBe(false);
    } finally {
      await unmountAll(run);
      await rm(run, { recursive: true, force: true });
      await rm(cache, { recursive: true, force: true });
    }
  });
});
