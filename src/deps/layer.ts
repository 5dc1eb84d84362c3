// Derived base layers: a qcow2 over the base's root.img holding exactly a resolved package set,
// installed by apt INSIDE a VM (network off, from the fetched .debs only): no package script ever
// runs on the host. Keyed by sha256(base root sha256 + sorted name:arch=version list); read-only
// once written; jobs boot on it in snapshot mode, so nothing a job does reaches it.
import { createHash } from 'node:crypto';
import { chmod, link, mkdir, mkdtemp, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { JrError } from '../errors.js';
import type { BaseImage } from '../image/base.js';
import { makeExtImage } from '../image/ext.js';
import { digestFile } from '../image/meta.js';
import { run } from '../proc.js';
import { handOver, type RunAs } from '../run-as.js';
import type { CachedDeb } from './fetch.js';
import { withLock } from './lock.js';
import { pinOf, type ResolvedPackage } from './resolve.js';

/** What layers/KEY.json records about a layer. */
export interface LayerRecord {
  key: string;
  base: { name: string; sha256: string };
  packages: string[];
  sha256: string;
  bytes: number;
  builtAt: string;
  installMs: number;
}

export interface Layer { file: string; record: LayerRecord; hit: boolean }

/** The cache's layer directory. */
export const layersDir = (cacheDir: string): string => path.join(cacheDir, 'layers');

/** The layer key of a resolved set on a base: independent of the order apt printed it in. */
export function layerKey(baseSha256: string, pkgs: ResolvedPackage[]): string {
  const pins = pkgs.map(pinOf).sort();
  return createHash('sha256').update(`jobrunner-layer-v1\n${baseSha256}\n${pins.join('\n')}\n`).digest('hex');
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
mount -o remount,ro / || echo "layer: / stayed writable; synced instead"
echo "layer: installed $(ls debs | wc -l) packages"
`;

/** The cached, complete, read-only layer with this key, or null. Marks it used (LRU). */
export function cachedLayer(cacheDir: string, key: string): Promise<Layer | null> {
  return layerHit(layersDir(cacheDir), key);
}

async function layerHit(dir: string, key: string): Promise<Layer | null> {
  const file = path.join(dir, `${key}.qcow2`);
  const record = JSON.parse(await readFile(path.join(dir, `${key}.json`), 'utf8').catch(() => 'null')) as LayerRecord | null;
  const st = await stat(file).catch(() => null);
  if (!record || !st || st.size !== record.bytes || (st.mode & 0o222) !== 0) return null;
  await utimes(file, new Date(), st.mtime).catch(() => undefined); // atime = last use (LRU)
  return { file, record, hit: true };
}

/** Boot the install job: the base with `rootLayers` (top one writable), network off; how it ended. */
export type InstallBoot = (req: { image: string; logPath: string; tmpDir: string; rootLayers: string[] }) =>
  Promise<{ end: string; exitCode: number | null; reason: string }>;

export interface LayerBuild {
  cacheDir: string;
  base: BaseImage;
  debs: CachedDeb[];
  /** Supplied by the job layer (a VM run): deps/ itself starts no VM. */
  boot: InstallBoot;
  runAs?: RunAs;
}

/** The layer for this package set on this base: the cached one, or built now (once per key). */
export async function ensureLayer(b: LayerBuild): Promise<Layer> {
  const dir = layersDir(b.cacheDir);
  await mkdir(dir, { recursive: true });
  const key = layerKey(b.base.rootSha256, b.debs);
  const hit = await layerHit(dir, key);
  if (hit) return hit;
  return withLock(path.join(dir, `${key}.lock`), async () => (await layerHit(dir, key)) ?? build(b, dir, key));
}

async function build(b: LayerBuild, dir: string, key: string): Promise<Layer> {
  const started = Date.now();
  const work = await mkdtemp(path.join(dir, `.build-${key.slice(0, 12)}-`));
  const vmTmp = await mkdtemp(path.join(os.tmpdir(), 'jobrunner-layer-'));
  try {
    const layer = path.join(work, 'layer.qcow2');
    const rootBytes = (await stat(b.base.root)).size;
    // No backing file in the header: the backing is given to qemu as a node (qemu-args rootDiskArgs).
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=65536', layer, String(rootBytes)]);
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
    const out = await b.boot({ image, logPath, tmpDir: vmTmp, rootLayers: [layer] });
    if (out.end !== 'exited' || out.exitCode !== 0) {
      const log = (await readFile(logPath, 'utf8').catch(() => '')).split('\n').slice(-25).join('\n');
      throw new JrError('JR_E_PROCESS', `installing the job's packages in a VM failed (${out.reason}):\n${log}`);
    }
    await chmod(layer, 0o444);
    const digest = await digestFile(layer);
    const record: LayerRecord = {
      key, base: { name: b.base.name, sha256: b.base.rootSha256 }, packages: b.debs.map(pinOf).sort(),
      sha256: digest.sha256, bytes: digest.bytes, builtAt: new Date().toISOString(), installMs: Date.now() - started,
    };
    // The qcow2 first, its record last: a record names only a complete layer.
    await rename(layer, path.join(dir, `${key}.qcow2`));
    await rename(logPath, path.join(dir, `${key}.log`)).catch(() => undefined);
    await writeFile(path.join(dir, `${key}.json.tmp`), JSON.stringify(record, null, 2));
    await rename(path.join(dir, `${key}.json.tmp`), path.join(dir, `${key}.json`));
    return { file: path.join(dir, `${key}.qcow2`), record, hit: false };
  } finally {
    await rm(work, { recursive: true, force: true });
    await rm(vmTmp, { recursive: true, force: true });
  }
}
