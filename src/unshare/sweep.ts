// Leftovers of unshare jobs that a crashed service could not clean up: their scratch directories
// (with our mounts still in them) and their cgroups. Named per spool, so a start-up sweep, holding
// the spool lock, touches only its own.
import { createHash } from 'node:crypto';
import { readdir, rm, rmdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { killGroups } from './limits.js';
import { unmountAll } from './mounts.js';

/** The id a spool's job runs under: names its scratch directory and cgroups. */
export function unshareJobId(queueDir: string, leaseId: string): string {
  return `${createHash('sha256').update(path.resolve(queueDir)).digest('hex').slice(0, 12)}-${leaseId}`;
}

/** Kill what is left in this spool's unshare cgroups, unmount and remove its scratch directories and the groups; returns how many. */
export async function sweepUnshare(queueDir: string): Promise<number> {
  const prefix = `jobrunner-unshare-${unshareJobId(queueDir, '')}`;
  let n = 0;
  // A crashed service's sandboxes died with it (--die-with-parent, pdeathsig); anything that did not
  // is still in their cgroups: kill it (frozen first) before removing the groups.
  const freezers = await findGroups('/sys/fs/cgroup/freezer', prefix, 3);
  const groups = ['memory', 'pids', 'cpu'].map((c) => findGroups(path.join('/sys/fs/cgroup', c), prefix, 3));
  const all = [...freezers, ...(await Promise.all(groups)).flat()];
  for (const f of freezers) await killGroups(all.filter((d) => path.basename(d) === path.basename(f)), f);
  await killGroups(all, null);
  for (const e of await readdir(os.tmpdir()).catch(() => [])) {
    if (!e.startsWith(prefix)) continue;
    const dir = path.join(os.tmpdir(), e);
    // Unmount first: a recursive rm would otherwise walk into the mounted filesystems.
    await unmountAll(dir);
    await rm(dir, { recursive: true, force: true });
    n++;
  }
  for (const found of all) { await rmdir(found).catch(() => undefined); n++; }
  return n;
}

/** cgroup directories named with `prefix` up to `depth` levels below `dir`. */
async function findGroups(dir: string, prefix: string, depth: number): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    if (!e.isDirectory()) continue;
    const p = path.join(dir, e.name);
    if (e.name.startsWith(prefix)) out.push(p);
    else if (depth > 0) out.push(...await findGroups(p, prefix, depth - 1));
  }
  return out;
}
