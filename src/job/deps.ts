// deps (issue 11), the lifecycle's side: what it asks of src/deps/ for one job: read and check its manifest, and the settings the
// VM gets once the manifest's requests (already capped by the operator's limits) are applied.
import type { Settings } from '../config.js';
import type { BaseImage } from '../image/base.js';
import type { RunAs } from '../run-as.js';
import type { DepsRecord } from '../spool/record.js';
import { runJobVm, type AccelState } from './vm-run.js';
import { ensureAptState } from '../deps/apt-state.js';
import { pruneCache } from '../deps/cache.js';
import { fetchDebs } from '../deps/fetch.js';
import { cachedLayer, ensureLayer, layerFormat, layerKey, VM_LAYER, type InstallBoot, type LayerKind } from '../deps/layer.js';
import { runJobUnshare } from '../unshare/run.js';
import { INSTALL_CAPS } from '../unshare/sandbox.js';
import { unshareInstallId } from '../unshare/sweep.js';
import { pinOf } from '../deps/resolve.js';
import { resolveMemo } from '../deps/resolve-memo.js';
import { emptyManifest, parseManifest, type Manifest, type ManifestLimits } from '../deps/manifest.js';
import { readManifestBytes } from '../deps/manifest-read.js';

/** The operator's caps, from the service settings. */
export function manifestLimits(s: Pick<Settings, 'maxMemory' | 'maxCpus' | 'maxTimeout' | 'maxDisk'>): ManifestLimits {
  return { maxMemory: s.maxMemory, maxCpus: s.maxCpus, maxTimeout: s.maxTimeout, maxDisk: s.maxDisk };
}

/** The job image's manifest (the empty one when it has none); JR_E_INPUT when it is bad. */
export async function loadJobManifest(image: string, s: Settings): Promise<Manifest> {
  const bytes = await readManifestBytes(image);
  return bytes === null ? emptyManifest() : parseManifest(bytes, manifestLimits(s));
}

/** The settings for this job's VM: the service's, with what the manifest asked for. */
export function settingsFor<S extends Pick<Settings, 'memory' | 'cpus' | 'timeout'>>(s: S, m: Manifest): S {
  return { ...s, memory: m.memory ?? s.memory, cpus: m.cpus ?? s.cpus, timeout: m.timeout ?? s.timeout };
}

export type { DepsRecord };

/** The kind of layer jobs of these settings run on: the VM's qcow2, or the unshare runner's ext4. */
export function layerKindFor(s: Pick<Settings, 'isolation' | 'unshareUidBase'>): LayerKind {
  return s.isolation === 'unshare' ? { isolation: 'unshare', idBase: s.unshareUidBase } : VM_LAYER;
}

export interface DepsContext {
  settings: Settings;
  accel: AccelState;
  runAs?: RunAs;
  signal?: AbortSignal;
  /**
   * The queue of the service whose job this is: an unshare install's sandbox is named for that
   * spool (as its jobs are), so the spool's start-up sweep finds what a crash left of it. Absent
   * for a foreground run: a random name no service sweeps.
   */
  spool?: string;
}

const secs = (ms: number): number => Math.round(ms / 100) / 10;

/**
 * Make the job's packages available: resolve on the host, fetch, and build (or reuse) the derived
 * layer. Returns the root layers the job boots on and the record; nothing to do without packages.
 */
export async function prepareDeps(m: Manifest, base: BaseImage, ctx: DepsContext): Promise<{ rootLayers: string[]; record: DepsRecord } | null> {
  if (m.packages.length === 0 && m.conflicts.length === 0) return null;
  const s = ctx.settings;
  let t = Date.now();
  const state = await ensureAptState(s.depsCache, base);
  const pkgs = await resolveMemo(state, m.packages, m.conflicts);
  const resolveMs = Date.now() - t;
  const record: DepsRecord = { requested: [...m.packages, ...m.conflicts.map((c) => `!${c}`)], resolved: pkgs.map(pinOf).sort(),
    layer: null, cacheHit: true, downloaded: { debs: 0, bytes: 0 }, durations: { resolve: secs(resolveMs), fetch: 0, install: null } };
  if (pkgs.length === 0) return { rootLayers: [], record }; // all already in the base
  // A cached layer for exactly this set needs no .debs: skip apt entirely.
  const kind = layerKindFor(s);
  const cached = await cachedLayer(s.depsCache, layerKey(base.rootSha256, pkgs, kind), layerFormat(kind));
  if (cached) {
    record.layer = { key: cached.record.key, sha256: cached.record.sha256, bytes: cached.record.bytes };
    return { rootLayers: [cached.file], record };
  }
  t = Date.now();
  const fetched = await fetchDebs(state, s.depsCache, pkgs);
  record.durations.fetch = secs(Date.now() - t);
  record.downloaded = { debs: fetched.downloaded, bytes: fetched.bytes };
  t = Date.now();
  // The install run, in the job's own isolation: the service's settings, the network off whatever
  // they say, an hour at least. A VM boots on a fresh qcow2; a sandbox writes the ext4 layer's
  // upper/ as root of its user namespace with only the capabilities dpkg needs (INSTALL_CAPS).
  const timeout = Math.max(s.timeout, 3600_000);
  const boot: InstallBoot = kind.isolation === 'vm'
    ? (r) => runJobVm({ ...r, base, runAs: ctx.runAs, signal: ctx.signal, rootWritable: true,
      settings: { ...s, network: 'off', timeout } }, ctx.accel)
    : (r) => runJobUnshare({ image: r.image, base, settings: { ...s, timeout }, logPath: r.logPath, signal: ctx.signal,
      rootLayers: r.rootLayers, rootWritable: true, caps: INSTALL_CAPS,
      // One install per key at a time (the layer's lock): the whole key names it within the spool.
      id: ctx.spool === undefined ? undefined : unshareInstallId(ctx.spool, r.key) });
  const layer = await ensureLayer({ cacheDir: s.depsCache, base, debs: fetched.debs, boot, runAs: ctx.runAs, kind });
  record.cacheHit = layer.hit;
  record.durations.install = layer.hit ? null : secs(Date.now() - t);
  record.layer = { key: layer.record.key, sha256: layer.record.sha256, bytes: layer.record.bytes };
  // The cache grew: evict what was used least recently (never what this job is about to boot on).
  await pruneCache(s.depsCache, s.depsCacheSize).catch(() => undefined);
  return { rootLayers: [layer.file], record };
}
