// Base images joot can use: local base-image directories (<dir>/<name>/root.img + image.json), and an
// optional index of remote ones, downloaded on first use into JOOT_HOME/images/<name>@<sha12>/ and
// verified against the sha256 in their image.json. Cache directories are content-addressed so an
// environment's overlay never sees its backing file replaced by a newer build.
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { tempName } from '../fsutil.js';
import { JrError, messageOf } from '../errors.js';
import { blkid, imageInfo, type ImageFormat } from '../image/probe.js';
import { metaFileFor, readMeta, writeMeta, type ImageMeta } from '../image/meta.js';
import type { JootConfig } from './config.js';
import { download, joinLocation, readText } from './fetch.js';
import { checkName } from './store.js';

export interface ImageRow { name: string; source: 'local' | 'index'; location: string; cached: boolean; detail: string }
export interface ResolvedImage { name: string; rootImg: string; format: ImageFormat; sha256: string | null; fstype: string | null }

// Only these files are fetched: names from a remote image.json must not choose paths on our disk.
const FETCHED = ['root.img', 'vmlinuz', 'initrd.img'];

const cacheDir = (cfg: JootConfig) => path.join(cfg.home, 'images');
const exists = (p: string) => stat(p).then(() => true, () => false);

/** Local image directories: every <dir>/<name>/root.img of the configured dirs and the cache. */
async function localDirs(cfg: JootConfig): Promise<Array<{ name: string; dir: string }>> {
  const out: Array<{ name: string; dir: string }> = [];
  for (const base of [...cfg.baseImageDirs, cacheDir(cfg)]) {
    for (const n of (await readdir(base).catch(() => [] as string[])).sort()) {
      if (!n.startsWith('.') && (await exists(path.join(base, n, 'root.img')))) out.push({ name: n.replace(/@[0-9a-f]{12}$/, ''), dir: path.join(base, n) });
    }
  }
  return out;
}

/** Entries of the configured index: where each image.json is, and its content (or why not). */
async function indexEntries(cfg: JootConfig): Promise<Array<{ metaLoc: string; meta?: ImageMeta; error?: string }>> {
  if (cfg.index === null) return [];
  let list: unknown = cfg.index;
  let base = '';
  if (typeof cfg.index === 'string') {
    base = cfg.index;
    try { list = JSON.parse(await readText(cfg.index)); } catch (e) {
      throw new JrError('JR_E_CONFIG', `cannot read image index ${cfg.index}: ${messageOf(e)}`, { cause: e });
    }
  }
  if (!Array.isArray(list) || !list.every((x) => typeof x === 'string')) {
    throw new JrError('JR_E_CONFIG', `Expected the image index ${base || '(inline)'} to be a JSON array of URLs or paths, got ${JSON.stringify(list).slice(0, 80)}`);
  }
  const out: Array<{ metaLoc: string; meta?: ImageMeta; error?: string }> = [];
  for (const e of list as string[]) {
    const absolute = /^[a-z][a-z0-9+.-]*:\/\//i.test(e) || e.startsWith('/') || !base;
    const loc = absolute ? e : joinLocation(base, e);
    const metaLoc = loc.endsWith('.json') ? loc : joinLocation(loc, 'image.json');
    try {
      const meta = JSON.parse(await readText(metaLoc)) as ImageMeta;
      checkName(meta.name, 'name in ' + metaLoc);
      if (!meta.files?.['root.img']?.sha256) throw new Error('no files["root.img"].sha256');
      out.push({ metaLoc, meta });
    } catch (err) { out.push({ metaLoc, error: messageOf(err) }); }
  }
  return out;
}

const cachedPath = (cfg: JootConfig, m: ImageMeta) => path.join(cacheDir(cfg), `${m.name}@${m.files['root.img']!.sha256.slice(0, 12)}`);

/** Everything `joot images` shows. */
export async function listImages(cfg: JootConfig): Promise<ImageRow[]> {
  const rows: ImageRow[] = [];
  for (const l of await localDirs(cfg)) {
    if (l.dir.startsWith(cacheDir(cfg) + '/')) continue; // shown with their index entry
    const mf = path.join(l.dir, 'image.json');
    const m = (await exists(mf)) ? await readMeta(mf).catch(() => null) : null;
    rows.push({ name: l.name, source: 'local', location: l.dir, cached: true, detail: m ? [m.suite, m.arch, m.kernelVersion].filter(Boolean).join(' ') : 'no image.json' });
  }
  for (const e of await indexEntries(cfg)) {
    if (!e.meta) { rows.push({ name: '?', source: 'index', location: e.metaLoc, cached: false, detail: `unreadable: ${e.error}` }); continue; }
    const cached = await exists(path.join(cachedPath(cfg, e.meta), 'image.json'));
    rows.push({ name: e.meta.name, source: 'index', location: e.metaLoc, cached, detail: [e.meta.suite, e.meta.arch, e.meta.kernelVersion].filter(Boolean).join(' ') });
  }
  return rows;
}

/** Download an index image into the cache (verifying every file) unless it is already there. */
async function fetchImage(cfg: JootConfig, metaLoc: string, meta: ImageMeta, say: (m: string) => void): Promise<string> {
  const final = cachedPath(cfg, meta);
  if (await exists(path.join(final, 'image.json'))) return final;
  const tmp = tempName(cacheDir(cfg), `tmp-${meta.name}`, 'dir');
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  try {
    for (const f of FETCHED) {
      const want = meta.files[f];
      if (!want) continue;
      say(`downloading ${joinLocation(metaLoc, f)}`);
      await download(joinLocation(metaLoc, f), path.join(tmp, f), want);
    }
    await writeMeta(path.join(tmp, 'image.json'), { ...meta, fetchedFrom: metaLoc, fetchedAt: new Date().toISOString() });
    await rename(tmp, final).catch(async (e: NodeJS.ErrnoException) => { if (!(await exists(final))) throw e; });
    return final;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

async function describe(name: string, rootImg: string): Promise<ResolvedImage> {
  const info = await imageInfo(rootImg);
  const mf = await metaFileFor(rootImg);
  const sha256 = mf ? (await readMeta(mf)).files['root.img']?.sha256 ?? null : null;
  const fstype = info.format === 'raw' ? (await blkid(rootImg)).TYPE ?? null : null;
  return { name, rootImg, format: info.format, sha256, fstype };
}

/** Turn what the user typed (a local or index image name, an image directory or file) into a file. */
export async function resolveImage(cfg: JootConfig, ref: string, say: (m: string) => void = () => {}): Promise<ResolvedImage> {
  if (ref.includes('/')) {
    const p = path.resolve(ref);
    const st = await stat(p).catch(() => null);
    if (st?.isDirectory()) return describe(path.basename(p), path.join(p, 'root.img'));
    if (st?.isFile()) return describe(path.basename(p), p);
    throw new JrError('JR_E_BASE_IMAGE', `no image at ${p}`);
  }
  const local = (await localDirs(cfg)).find((l) => l.name === ref && !l.dir.startsWith(cacheDir(cfg) + '/'));
  if (local) return describe(ref, path.join(local.dir, 'root.img'));
  const idx = (await indexEntries(cfg)).find((e) => e.meta?.name === ref);
  if (idx?.meta) return describe(ref, path.join(await fetchImage(cfg, idx.metaLoc, idx.meta, say), 'root.img'));
  const known = (await listImages(cfg)).map((r) => r.name).filter((n) => n !== '?');
  throw new JrError('JR_E_BASE_IMAGE', `no base image named "${ref}" (available: ${known.join(', ') || 'none; build one with scripts/build-base-image'})`);
}
