// apt's answer for a set of relations depends only on the base (its status), the package lists and
// the relations: remember it per (lists, relations) so a repeated job skips apt altogether (apt's
// resolver costs 1-10 s on a loaded 2-core host; reading one small JSON file costs a millisecond).
// Refreshing the lists (apt-get update) writes a new stamp, which changes every key.
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { readJson } from '../fsutil.js';
import type { AptState } from './apt-state.js';
import { resolvePackages, type ResolvedPackage } from './resolve.js';

/** resolvePackages, answered from the memo when the same lists already resolved the same relations. */
export async function resolveMemo(state: AptState, packages: string[], conflicts: string[]): Promise<ResolvedPackage[]> {
  if (packages.length === 0 && conflicts.length === 0) return [];
  const stamp = await readFile(path.join(state.dir, 'state', 'updated'), 'utf8').catch(() => null);
  if (stamp === null) return resolvePackages(state, packages, conflicts);
  const key = createHash('sha256').update(JSON.stringify([state.baseSha256, stamp, [...packages].sort(), [...conflicts].sort()])).digest('hex');
  const dir = path.join(state.dir, 'resolved');
  const file = path.join(dir, `${key}.json`);
  const memo = await readJson(file) as ResolvedPackage[] | null;
  if (Array.isArray(memo)) return memo;
  const pkgs = await resolvePackages(state, packages, conflicts);
  await mkdir(dir, { recursive: true });
  await writeFile(`${file}.${process.pid}.tmp`, JSON.stringify(pkgs));
  await rename(`${file}.${process.pid}.tmp`, file);
  return pkgs;
}
