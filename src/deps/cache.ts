// The deps cache on disk: what is in it, and least-recently-used eviction down to --deps-cache-size.
// "Used" is the file's atime, which fetch and layer lookups set on every use; "size" is what a file
// takes on disk (allocated blocks), not its apparent size: unshare layers are sparse.
import type { Stats } from 'node:fs';
import { readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { readJson } from '../fsutil.js';
import { debsDir } from './fetch.js';
import { layersDir, type LayerRecord } from './layer.js';

export interface CacheEntry {
  kind: 'layer' | 'deb';
  /** Layer key or the .deb's sha256. */
  id: string;
  /**
   * What the entry's data file takes on disk (allocated blocks), the measure --deps-cache-size
   * bounds: an unshare layer is a sparse ext4 of >= 1 GiB apparent size holding far less. (A
   * layer record's `bytes` is the apparent size: what its sha256 covers.)
   */
  bytes: number;
  lastUsed: Date;
  /** Files that make up the entry (removed together): a layer's are [data (.qcow2 or .ext4), .json, .log]. */
  files: string[];
  /** A layer's resolved packages. */
  packages?: string[];
}

/** Entries used this recently are never evicted: a job may have resolved them and not yet opened them. */
export const IN_USE_GRACE_MS = 10 * 60_000;

/** Bytes a file holds on disk: its allocated 512-byte units (holes take none). */
const allocated = (st: Stats): number => st.blocks * 512;

/** Every layer and .deb in the cache, least recently used first. */
export async function listCache(cacheDir: string): Promise<CacheEntry[]> {
  const out: CacheEntry[] = [];
  const ldir = layersDir(cacheDir);
  for (const f of await readdir(ldir).catch(() => [] as string[])) {
    const m = /^([0-9a-f]{64})\.(qcow2|ext4)$/.exec(f);
    if (!m) continue;
    const st = await stat(path.join(ldir, f)).catch(() => null);
    if (!st) continue;
    const rec = await readJson(path.join(ldir, `${m[1]}.json`)) as LayerRecord | null;
    out.push({ kind: 'layer', id: m[1]!, bytes: allocated(st), lastUsed: st.atime, packages: rec?.packages ?? [],
      files: [m[2]!, 'json', 'log'].map((e) => path.join(ldir, `${m[1]}.${e}`)) });
  }
  const ddir = debsDir(cacheDir);
  for (const f of await readdir(ddir).catch(() => [] as string[])) {
    const m = /^([0-9a-f]{64})\.deb$/.exec(f);
    if (!m) continue;
    const st = await stat(path.join(ddir, f)).catch(() => null);
    if (st) out.push({ kind: 'deb', id: m[1]!, bytes: allocated(st), lastUsed: st.atime, files: [path.join(ddir, f)] });
  }
  return out.sort((a, b) => a.lastUsed.getTime() - b.lastUsed.getTime());
}

/** Evict least recently used entries until the cache holds at most maxBytes; returns what went. */
export async function pruneCache(cacheDir: string, maxBytes: number, now = Date.now()): Promise<CacheEntry[]> {
  const entries = await listCache(cacheDir);
  let total = entries.reduce((n, e) => n + e.bytes, 0);
  const removed: CacheEntry[] = [];
  for (const e of entries) {
    if (total <= maxBytes) break;
    if (now - e.lastUsed.getTime() < IN_USE_GRACE_MS) continue;
    // A layer's record first: without it the layer is no longer a cache hit, then its data.
    for (const f of e.kind === 'layer' ? [e.files[1]!, e.files[0]!, e.files[2]!] : e.files) await rm(f, { force: true });
    total -= e.bytes;
    removed.push(e);
  }
  return removed;
}
