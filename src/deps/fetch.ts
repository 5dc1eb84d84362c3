// Download the exact .debs of a resolved closure into the shared, content-addressed cache
// (debs/SHA256.deb), verified against the sha256 in apt's Packages data. Only apt-get download
// runs: it fetches and checks files, it never unpacks them or runs their scripts.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chown, mkdir, mkdtemp, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import path from 'node:path';
import { JrError } from '../errors.js';
import { apt, aptUid, type AptState } from './apt-state.js';
import type { ResolvedPackage } from './resolve.js';

export interface CachedDeb extends ResolvedPackage { sha256: string; size: number; file: string }

/** The cache's .deb directory. */
export const debsDir = (cacheDir: string): string => path.join(cacheDir, 'debs');

async function sha256Of(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** The SHA256 and Size apt's Packages data give for each name=version (apt-cache show). */
export async function packageRecords(state: AptState, pkgs: ResolvedPackage[]): Promise<Map<string, { sha256: string; size: number }>> {
  const r = await apt(state, 'apt-cache', ['show', '-q', ...pkgs.map((p) => `${p.name}:${p.arch}=${p.version}`)]);
  if (r.exitCode !== 0) throw new JrError('JR_E_PROCESS', `apt-cache show failed: ${r.stderr.trim().slice(-1000)}`);
  const out = new Map<string, { sha256: string; size: number }>();
  for (const rec of r.stdout.split(/\n\n+/)) {
    const field = (f: string): string | undefined => new RegExp(`^${f}: (.*)$`, 'm').exec(rec)?.[1]?.trim();
    const name = field('Package'); const version = field('Version');
    const sha256 = field('SHA256'); const size = field('Size');
    if (!name || !version || !sha256 || !size) continue;
    const key = `${name}=${version}`;
    if (!out.has(key)) out.set(key, { sha256, size: Number(size) });
  }
  return out;
}

/** Make sure every package's .deb is in the cache; returns them with their verified sha256. */
export async function fetchDebs(state: AptState, cacheDir: string, pkgs: ResolvedPackage[]): Promise<{ debs: CachedDeb[]; downloaded: number; bytes: number }> {
  if (pkgs.length === 0) return { debs: [], downloaded: 0, bytes: 0 };
  const dir = debsDir(cacheDir);
  await mkdir(dir, { recursive: true });
  const records = await packageRecords(state, pkgs);
  const debs: CachedDeb[] = pkgs.map((p) => {
    const rec = records.get(`${p.name}=${p.version}`);
    if (!rec || !/^[0-9a-f]{64}$/.test(rec.sha256)) throw new JrError('JR_E_PROCESS', `apt has no SHA256 for ${p.name}=${p.version}`);
    return { ...p, sha256: rec.sha256, size: rec.size, file: path.join(dir, `${rec.sha256}.deb`) };
  });
  const missing: CachedDeb[] = [];
  for (const d of debs) {
    const st = await stat(d.file).catch(() => null);
    if (st?.size === d.size) await utimes(d.file, new Date(), st.mtime).catch(() => undefined); // atime = last use (LRU)
    else missing.push(d);
  }
  let bytes = 0;
  if (missing.length > 0) {
    const tmp = await mkdtemp(path.join(dir, '.download-'));
    try {
      const uid = await aptUid();
      if (uid >= 0) await chown(tmp, uid, 0).catch(() => undefined);
      const r = await apt(state, 'apt-get', ['download', '-q', ...missing.map((p) => `${p.name}:${p.arch}=${p.version}`)], { cwd: tmp });
      if (r.exitCode !== 0) throw new JrError('JR_E_PROCESS', `apt-get download failed: ${r.stderr.trim().slice(-1500)}`);
      const want = new Map(missing.map((d) => [d.sha256, d]));
      for (const f of await readdir(tmp)) {
        const p = path.join(tmp, f);
        const sha = await sha256Of(p);
        const d = want.get(sha);
        if (!d) continue;
        await rename(p, d.file);
        bytes += d.size;
        want.delete(sha);
      }
      if (want.size > 0) {
        const names = [...want.values()].map((d) => `${d.name}=${d.version}`).join(', ');
        throw new JrError('JR_E_PROCESS', `downloaded .debs do not match apt's SHA256 for: ${names}`);
      }
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }
  return { debs, downloaded: missing.length, bytes };
}
