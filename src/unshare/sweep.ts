// Leftovers of unshare jobs that a crashed service could not clean up: their scratch directories
// (with our mounts still in them) and their cgroups. Named per spool, so a start-up sweep, holding
// the spool lock, touches only its own. A deps layer's build is found by its file instead
// (releaseLoopFiles): the caller holds the layer's lock, so whatever run still has it mounted is dead.
import { createHash } from 'node:crypto';
import { readdir, realpath, rm, rmdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { killGroups } from './limits.js';
import { loopMountsUnder, unmount, unmountAll } from './mounts.js';

/** Names of a run's scratch directory (then "-" and mkdtemp's 6 characters) and cgroups: this, then its id. */
const PREFIX = 'jobrunner-unshare-';

/** The id a spool's job runs under: names its scratch directory and cgroups. */
export function unshareJobId(queueDir: string, leaseId: string): string {
  return `${createHash('sha256').update(path.resolve(queueDir)).digest('hex').slice(0, 12)}-${leaseId}`;
}

/**
 * The id a spool's deps install of layer `key` runs under: the whole key (64 hex digits; one
 * install per key at a time, under the layer's lock). 100 characters as a cgroup name, 107 as the
 * scratch directory's: far below NAME_MAX, and the sweeps here match names by prefix or whole.
 */
export function unshareInstallId(queueDir: string, key: string): string {
  return unshareJobId(queueDir, `deps-${key}`);
}

/** Kill what is left in this spool's unshare cgroups, unmount and remove its scratch directories and the groups; returns how many. */
export async function sweepUnshare(queueDir: string): Promise<number> {
  const prefix = `${PREFIX}${unshareJobId(queueDir, '')}`;
  const dirs = (await readdir(os.tmpdir()).catch(() => [] as string[])).filter((e) => e.startsWith(prefix)).map((e) => path.join(os.tmpdir(), e));
  return sweep((name) => name.startsWith(prefix), dirs);
}

/**
 * Free every file under `dir` that an unshare run still has loop-mounted (a deps layer whose
 * install was cut short by a crash, under any run name, a foreground run's too): a run whose
 * scratch directory holds such a mount is swept whole (overlay, other mounts, cgroups, directory);
 * any other mount of it is unmounted. Only for files no live process uses: the caller knows (it
 * holds the layer's lock). Returns how many runs and mounts it removed.
 */
export async function releaseLoopFiles(dir: string): Promise<number> {
  let n = 0;
  // sysfs names a loop device's file by its real path.
  for (const mp of await loopMountsUnder(await realpath(dir).catch(() => dir))) {
    const run = path.dirname(mp);
    const name = path.basename(run);
    if (name.startsWith(PREFIX) && /-[A-Za-z0-9]{6}$/.test(name)) {
      const group = name.slice(0, -7);
      n += await sweep((g) => g === group, [run]);
    } else {
      await unmount(mp);
      n++;
    }
  }
  return n;
}

/** Kill and remove the cgroups whose names `match` selects, unmount and remove `dirs`; returns how many. */
async function sweep(match: (group: string) => boolean, dirs: string[]): Promise<number> {
  let n = 0;
  // A crashed service's sandboxes died with it (--die-with-parent, pdeathsig); anything that did not
  // is still in their cgroups: kill it (frozen first) before removing the groups.
  const freezers = await findGroups('/sys/fs/cgroup/freezer', match, 3);
  const groups = ['memory', 'pids', 'cpu'].map((c) => findGroups(path.join('/sys/fs/cgroup', c), match, 3));
  const all = [...freezers, ...(await Promise.all(groups)).flat()];
  for (const f of freezers) await killGroups(all.filter((d) => path.basename(d) === path.basename(f)), f);
  await killGroups(all, null);
  for (const dir of dirs) {
    // Unmount first: a recursive rm would otherwise walk into the mounted filesystems.
    await unmountAll(dir);
    await rm(dir, { recursive: true, force: true });
    n++;
  }
  for (const found of all) { await rmdir(found).catch(() => undefined); n++; }
  return n;
}

/** Our cgroup directories (jobrunner-unshare-*) whose names `match` selects, up to `depth` levels below `dir`. */
async function findGroups(dir: string, match: (group: string) => boolean, depth: number): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    if (!e.isDirectory()) continue;
    const p = path.join(dir, e.name);
    if (e.name.startsWith(PREFIX) && match(e.name)) out.push(p);
    else if (depth > 0) out.push(...await findGroups(p, match, depth - 1));
  }
  return out;
}
