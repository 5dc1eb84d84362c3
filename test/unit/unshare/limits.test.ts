// A sandbox's cgroups (src/unshare/limits.ts): a missing hierarchy falls back to rlimits, but a
// group of the run's name that exists already fails the run (never a run without its limits). The
// real v1 hierarchies: root only.
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { makeLimits, type Limits } from '../../../src/unshare/limits.js';

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
});
