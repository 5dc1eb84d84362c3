// Leftovers of unshare jobs that a crashed service could not clean up: their scratch directories
// (with our mounts still in them) and their cgroups. Named per spool, so a start-up sweep, holding
// the spool lock, touches only its own.
import { createHash } from 'node:crypto';
import { readdir, rm, rmdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { unmountAll } from './mounts.js';

/** The id a spool's job runs under: names its scratch directory and cgroups. */
export function unshareJobId(queueDir: string, leaseId: string): string {
  return `${createHash('sha256').update(path.resolve(queueDir)).digest('hex').slice(0, 12)}-${leaseId}`;
}

/** Unmount and remove every unshare scratch directory and cgroup of this spool; returns how many. */
export async function sweepUnshare(queueDir: string): Promise<number> {
  const prefix = `jobrunner-unshare-${unshareJobId(queueDir, '')}`;
  let n = 0;
  for (const e of await readdir(os.tmpdir()).catch(() => [])) {
    if (!e.startsWith(prefix)) continue;
    const dir = path.join(os.tmpdir(), e);
    // Unmount first: a recursive rm would otherwise walk into the mounted filesystems.
    await unmountAll(dir);
    await rm(dir, { recursive: true, force: true });
    n++;
  }
  for (const c of ['memory', 'pids', 'cpu']) {
    for (const found of await findGroups(path.join('/sys/fs/cgroup', c), prefix, 3)) { await rmdir(found).catch(() => undefined); n++; }
  }
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
