// Derived base layers: the changes a resolved package set makes to the base's root, installed by
// apt INSIDE the job's isolation (network off, from the fetched .debs only): no package script ever
// runs on the host unconfined. For the VM a layer is a qcow2 over the base's root.img; for
// --isolation unshare it is an ext4 image whose upper/ is an overlayfs upper directory written by
// the install sandbox (ids shifted by --unshare-uid-base). Keyed by sha256(kind + base root sha256 +
// sorted name:arch=version list); read-only once written; jobs run on it with a throwaway layer
// above (snapshot mode; a read-only lower), so nothing a job does reaches it.
import { createHash } from 'node:crypto';
import { chmod, link, mkdir, mkdtemp, readdir, readFile, realpath, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { JrError } from '../errors.js';
import { readJson } from '../fsutil.js';
import { unlock } from '../lock.js';
import type { BaseImage } from '../image/base.js';
import { makeExtImage } from '../image/ext.js';
import { openConfined } from '../image/confine.js';
import { digestFile } from '../image/meta.js';
import { run } from '../proc.js';
import { handOver, type RunAs } from '../run-as.js';
import { loopDevicesUnder, unmountAll } from '../unshare/mounts.js';
import { makeEmptyExt4 } from '../unshare/stage.js';
import { releaseLoopFiles } from '../unshare/sweep.js';
import type { CachedDeb } from './fetch.js';
import { tryLockNow, withLock } from './lock.js';
import { pinOf, type ResolvedPackage } from './resolve.js';

/** What layers/KEY.json records about a layer. */
export interface LayerRecord {
  key: string;
  /** qcow2 (VM) or ext4 (unshare); records from before unshare layers existed are qcow2. */
  format?: LayerFormat;
  base: { name: string; sha256: string };
  packages: string[];
  sha256: string;
  /**
   * The layer file's apparent size, what sha256 covers (a cache hit checks it). An ext4 layer is
   * sparse: it takes less on disk (the cache's LRU bound counts allocated blocks, cache.ts).
   */
  bytes: number;
  builtAt: string;
  installMs: number;
}

export interface Layer { file: string; record: LayerRecord; hit: boolean }

/** The cache's layer directory. */
export const layersDir = (cacheDir: string): string => path.join(cacheDir, 'layers');

export type LayerFormat = 'qcow2' | 'ext4';

/** Which runner a layer is for: a VM's qcow2, or an unshare sandbox's ext4 with ids shifted by idBase. */
export type LayerKind = { isolation: 'vm' } | { isolation: 'unshare'; idBase: number };
export const VM_LAYER: LayerKind = { isolation: 'vm' };

export const layerFormat = (kind: LayerKind): LayerFormat => (kind.isolation === 'vm' ? 'qcow2' : 'ext4');

/** A layer's file in the cache. */
export const layerFile = (dir: string, key: string, format: LayerFormat): string => path.join(dir, `${key}.${format}`);

/**
 * The layer key of a resolved set on a base for one kind of runner: independent of the order apt
 * printed it in. The VM's salt is the one keys had before unshare layers (their cache stays valid);
 * an unshare layer's files carry shifted ids, so its id base is part of the key.
 */
export function layerKey(baseSha256: string, pkgs: ResolvedPackage[], kind: LayerKind = VM_LAYER): string {
  const pins = pkgs.map(pinOf).sort();
  const salt = kind.isolation === 'vm' ? 'jobrunner-layer-v1' : `jobrunner-layer-unshare-v1 ${kind.idBase}`;
  return createHash('sha256').update(`${salt}\n${baseSha256}\n${pins.join('\n')}\n`).digest('hex');
}

/** Size of an unshare layer's (sparse) ext4: room for the unpacked packages, 1 GiB at least. */
export function ext4LayerBytes(debBytes: number): number {
  const mib = 1024 * 1024;
  return Math.ceil(Math.max(1024 * mib, debBytes * 8 + 512 * mib) / mib) * mib;
}

// The install job's entry point. apt reads no sources (an empty list: the guest has no
// network anyway) and installs only the .debs on its command line, in dependency order; then the
// root is remounted read-only so the layer is a clean filesystem, not one needing journal replay.
const INSTALL_SCRIPT = `#!/bin/sh
set -eu
export DEBIAN_FRONTEND=noninteractive
cd /job
: > /tmp/no-sources.list; mkdir -p /tmp/no-sources.d
apt-get install -y -q --no-install-recommends -o Dir::Etc::SourceList=/tmp/no-sources.list -o Dir::Etc::SourceParts=/tmp/no-sources.d \\
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold ./debs/*.deb
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/eipp.log.xz
sync
# In a VM the root becomes read-only (a clean filesystem); a sandbox may not remount: the host
# unmounts its layer cleanly instead.
mount -o remount,ro / 2>/dev/null || true
echo "layer: installed $(ls debs | wc -l) packages"
`;

/** The cached, complete, read-only layer with this key, or null. Marks it used (LRU). */
export function cachedLayer(cacheDir: string, key: string, format: LayerFormat = 'qcow2'): Promise<Layer | null> {
  return layerHit(layersDir(cacheDir), key, format);
}

async function layerHit(dir: string, key: string, format: LayerFormat): Promise<Layer | null> {
  const file = layerFile(dir, key, format);
  const record = await readJson(path.join(dir, `${key}.json`)) as LayerRecord | null;
  const st = await stat(file).catch(() => null);
  if (!record || !st || st.size !== record.bytes || (st.mode & 0o222) !== 0 || (record.format ?? 'qcow2') !== format) return null;
  await utimes(file, new Date(), st.mtime).catch(() => undefined); // atime = last use (LRU)
  return { file, record, hit: true };
}

/**
 * Run the install job: the base with `rootLayers` (the top one, made here, writable), network off;
 * how it ended. A VM boots on the qcow2; an unshare sandbox uses the ext4's upper/ as its overlay upper.
 */
export type InstallBoot = (req: { image: string; logPath: string; tmpDir: string; rootLayers: string[]; key: string }) =>
  Promise<{ end: string; exitCode: number | null; reason: string }>;

export interface LayerBuild {
  cacheDir: string;
  base: BaseImage;
  debs: CachedDeb[];
  /** Supplied by the job layer (a VM or sandbox run): deps/ itself starts neither. */
  boot: InstallBoot;
  /** The runner the layer is for (default: the VM). */
  kind?: LayerKind;
  runAs?: RunAs;
}

/**
 * Before an unshare layer is published: no loop device has it (nothing has it mounted, lazily
 * detached or not), and its filesystem is clean: a cleanly unmounted state, no journal to replay,
 * and `e2fsck -fn` finds nothing. Our own image, written only through the kernel (the install
 * never had the block device), read all the same like any image a job touched: through the
 * confined runner (image/confine.ts), the house rule for e2fsprogs readers.
 */
export async function checkReleased(file: string): Promise<void> {
  const fail = (why: string): never => { throw new JrError('JR_E_PROCESS', `the new layer ${file} is not published: ${why}`); };
  const real = await realpath(file);
  if ((await loopDevicesUnder(real)).length > 0) fail('it is still attached to a loop device (mounted somewhere)');
  const box = await openConfined(file);
  try {
    const limits = { timeoutMs: 300_000, cpuSeconds: 240 };
    const sb = await box.run('dumpe2fs', ['-h', box.path], { limits });
    const head = sb.stdout.toString();
    const state = /^Filesystem state:\s*(.*)$/m.exec(head)?.[1]?.trim();
    const features = /^Filesystem features:\s*(.*)$/m.exec(head)?.[1] ?? '';
    if (sb.exitCode !== 0 || state !== 'clean') fail(`its filesystem is not clean (dumpe2fs: state ${state ?? '?'}, exit ${sb.exitCode})`);
    if (/\bneeds_recovery\b/.test(features)) fail('its journal needs recovery (it was not unmounted cleanly)');
    const fsck = await box.run('e2fsck', ['-fn', box.path], { limits });
    if (fsck.exitCode !== 0) fail(`e2fsck -fn exited ${fsck.exitCode}: ${(fsck.stdout.toString() + fsck.stderr).trim().split('\n').slice(-3).join(' | ')}`);
  } finally {
    await box.close();
  }
}

/** A layer build's work directory in the layers directory: this, its key, "-" and mkdtemp's suffix. */
const BUILD_PREFIX = '.build-';

/**
 * Remove the work directories of builds that died with their process (a service killed mid-install):
 * the layer image being written (an unshare install's still loop-mounted read-write, with the
 * sandbox's overlay and cgroups: released through unshare/sweep), the install image, the log. A
 * builder holds its key's lock for its directory's whole life, so a directory is removed only while
 * we hold that lock ourselves: never one a live process (another service sharing the cache) owns.
 * Directories of older versions name 12 hex digits of the key: every lock with that prefix is taken
 * (none existing means no live builder). Returns how many directories went.
 */
export async function sweepLayerBuilds(cacheDir: string): Promise<number> {
  const dir = layersDir(cacheDir);
  const names = await readdir(dir).catch(() => [] as string[]);
  const builds = new Map<string, string[]>();
  for (const name of names) {
    const m = /^\.build-([0-9a-f]{12}(?:[0-9a-f]{52})?)-[A-Za-z0-9]{6}$/.exec(name);
    if (m) builds.set(m[1]!, [...(builds.get(m[1]!) ?? []), name]);
  }
  let n = 0;
  for (const [key, dirs] of builds) {
    const locks = (key.length === 64 ? [`${key}.lock`] : names.filter((f) => /^[0-9a-f]{64}\.lock$/.test(f) && f.startsWith(key)))
      .map((f) => path.join(dir, f));
    const held: string[] = [];
    try {
      let free = true;
      for (const l of locks) {
        if (!(await tryLockNow(l))) { free = false; break; }
        held.push(l);
      }
      if (!free) continue; // a live build of this key: its directory is in use
      for (const d of dirs) {
        const work = path.join(dir, d);
        await releaseLoopFiles(work);
        await unmountAll(work);
        await rm(work, { recursive: true, force: true });
        n++;
      }
    } finally {
      for (const l of held) await unlock(l);
    }
  }
  return n;
}

/** The layer for this package set on this base: the cached one, or built now (once per key). */
export async function ensureLayer(b: LayerBuild): Promise<Layer> {
  const dir = layersDir(b.cacheDir);
  await mkdir(dir, { recursive: true });
  const kind = b.kind ?? VM_LAYER;
  const format = layerFormat(kind);
  const key = layerKey(b.base.rootSha256, b.debs, kind);
  const hit = await layerHit(dir, key, format);
  if (hit) return hit;
  return withLock(path.join(dir, `${key}.lock`), async () => (await layerHit(dir, key, format)) ?? build(b, dir, key, format));
}

async function build(b: LayerBuild, dir: string, key: string, format: LayerFormat): Promise<Layer> {
  const started = Date.now();
  // Named by the whole key: the start-up sweep tells whose lock guards it (sweepLayerBuilds).
  const work = await mkdtemp(path.join(dir, `${BUILD_PREFIX}${key}-`));
  const vmTmp = await mkdtemp(path.join(os.tmpdir(), 'jobrunner-layer-'));
  try {
    const layer = path.join(work, `layer.${format}`);
    const debBytes = b.debs.reduce((n, d) => n + d.size, 0);
    if (format === 'qcow2') {
      const rootBytes = (await stat(b.base.root)).size;
      // No backing file in the header: the backing is given to qemu as a node (qemu-args rootDiskArgs).
      await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=65536', layer, String(rootBytes)]);
    } else {
      // An empty, sparse ext4 of our own making: the unshare runner mounts it and writes upper/ into it.
      await makeEmptyExt4(layer, ext4LayerBytes(debBytes), 0, 'deps-layer');
    }
    const tree = path.join(work, 'job');
    await mkdir(path.join(tree, 'bin'), { recursive: true });
    await mkdir(path.join(tree, 'debs'));
    await writeFile(path.join(tree, 'bin', 'construir'), INSTALL_SCRIPT, { mode: 0o755 });
    let bytes = 0;
    for (const d of b.debs) {
      // Our own names (the .deb's content is apt-verified; its file name is ours, never the archive's).
      const name = `${d.name}_${d.version.replace(/:/g, '%3a')}_${d.arch}.deb`;
      await link(d.file, path.join(tree, 'debs', name));
      bytes += d.size;
    }
    const image = path.join(work, 'install.img');
    await makeExtImage(tree, image, bytes + 256 * 1024 * 1024, 'ext4', 'deps');
    await handOver(b.runAs, [vmTmp, image]);
    const logPath = path.join(work, 'install.log');
    const out = await b.boot({ image, logPath, tmpDir: vmTmp, rootLayers: [layer], key });
    if (out.end !== 'exited' || out.exitCode !== 0) {
      const log = (await readFile(logPath, 'utf8').catch(() => '')).split('\n').slice(-25).join('\n');
      const where = format === 'qcow2' ? 'a VM' : 'an unshare sandbox';
      throw new JrError('JR_E_PROCESS', `installing the job's packages in ${where} failed (${out.reason}):\n${log}`);
    }
    if (format === 'ext4') await checkReleased(layer);
    await chmod(layer, 0o444);
    const digest = await digestFile(layer);
    const record: LayerRecord = {
      key, format, base: { name: b.base.name, sha256: b.base.rootSha256 }, packages: b.debs.map(pinOf).sort(),
      sha256: digest.sha256, bytes: digest.bytes, builtAt: new Date().toISOString(), installMs: Date.now() - started,
    };
    // The layer first, its record last: a record names only a complete layer.
    const file = layerFile(dir, key, format);
    await rename(layer, file);
    await rename(logPath, path.join(dir, `${key}.log`)).catch(() => undefined);
    await writeFile(path.join(dir, `${key}.json.tmp`), JSON.stringify(record, null, 2));
    await rename(path.join(dir, `${key}.json.tmp`), path.join(dir, `${key}.json`));
    return { file, record, hit: false };
  } finally {
    await rm(work, { recursive: true, force: true });
    await rm(vmTmp, { recursive: true, force: true });
  }
}
