// Shared, reference-counted mounts of one environment. Every `joot enter` is a holder (pid + start
// time) of the disk mount and of each automount it uses; `joot mount` pins them instead. Whoever
// removes the last holder of an unpinned mount unmounts it, so two enters share one mount and the last
// to leave unmounts only what nobody else still uses. Holders that died (kill -9) are pruned by the
// next joot to take the lock. All of it is recorded in mount.json under the environment's lock.
import { rm } from 'node:fs/promises';
import { JrError, messageOf } from '../errors.js';
import { loadState, mountImage, saveState, unmountImage, type MountState } from '../image/mount.js';
import { isMounted, mounts } from '../image/mountinfo.js';
import { isAlive, type ProcId } from '../procfs.js';
import { metaFileFor, readMeta } from '../image/meta.js';
import { SYSTEM_MOUNTS, bindSpec, copyHostFile, mkdirInside, mountAll, unmountAll, type MountSpec } from '../image/chroot.js';
import { envPaths, withEnvLock, type EnvRecord } from './store.js';

export type Holder = ProcId;

export interface Item {
  /** Path inside the environment, and the host path it was mounted at. */
  target: string;
  hostTarget: string;
  kind: 'system' | 'bind';
  source: string;
  readOnly: boolean;
  holders: Holder[];
  pinned: boolean;
}

export interface SessionState { version: 1; disk: MountState | null; holders: Holder[]; pinned: boolean; items: Item[] }

export interface AcquireRequest {
  /** An enter session (released by `release`), or a pin (`joot mount`, released by `unpin`). */
  holder?: Holder;
  pin?: boolean;
  system?: boolean;
  binds?: Array<{ source: string; target: string; readOnly: boolean }>;
  /** More binds decided once the root is mounted (enter reads the user from the environment); may
   *  throw to refuse, after which the caller still releases. */
  plan?: (root: string) => Promise<Array<{ source: string; target: string; readOnly: boolean }>>;
  copyFiles?: string[];
}

const same = (a: Holder) => (b: Holder) => a.pid === b.pid && a.start === b.start;

async function load(home: string, name: string): Promise<SessionState> {
  return (await loadState<SessionState>(envPaths(home, name).state)) ?? { version: 1, disk: null, holders: [], pinned: false, items: [] };
}

/** Drop dead holders and unmount whatever nobody holds or pins. Returns the problems (busy mounts)
 *  instead of throwing: what could not go stays recorded and is retried next time. */
async function gc(s: SessionState, save: () => Promise<void>): Promise<string[]> {
  const problems: string[] = [];
  const live = async (hs: Holder[]) => (await Promise.all(hs.map(async (h) => ((await isAlive(h)) ? h : null)))).filter((h): h is Holder => h !== null);
  s.holders = await live(s.holders);
  for (const i of s.items) i.holders = await live(i.holders);
  await save();
  // Innermost (last mounted) first, all in one umount(8).
  const unused = s.items.filter((i) => i.holders.length === 0 && !i.pinned).reverse();
  if (unused.length > 0) {
    const { left, why } = await unmountAll(unused.map((i) => i.hostTarget));
    if (left.length > 0) problems.push(`${left.join(', ')}: ${why || 'still mounted'}`);
    s.items = s.items.filter((i) => !unused.includes(i) || left.includes(i.hostTarget));
    await save();
  }
  if (s.disk && s.holders.length === 0 && !s.pinned && s.items.length === 0) {
    try {
      await unmountImage(s.disk, async (d) => { s.disk = d; await save(); });
      s.disk = null;
      await save();
    } catch (e) { problems.push(messageOf(e)); }
  }
  return problems;
}

/** Refuse to mount an overlay whose base image was rebuilt or edited since: qcow2 would silently
 *  mix the old overlay with new base blocks and corrupt the filesystem. */
async function checkBase(rec: EnvRecord): Promise<void> {
  if (!rec.imageSha256) return;
  const f = await metaFileFor(rec.imagePath);
  if (!f) throw new JrError('JR_E_BASE_IMAGE', `base image ${rec.imagePath} of joot "${rec.name}" is gone`);
  const now = (await readMeta(f)).files['root.img']?.sha256;
  if (now !== rec.imageSha256) {
    throw new JrError('JR_E_BASE_IMAGE', `base image "${rec.image}" changed since joot "${rec.name}" was created (sha256 ${rec.imageSha256.slice(0, 12)}… is now ${String(now).slice(0, 12)}…); its overlay no longer matches: delete and re-create it`);
  }
}

/** Mount the environment (if needed) plus the requested automounts, as `req.holder` or pinned, and
 *  copy the configured host files in. Returns the host path of the environment's root. */
export async function acquire(home: string, rec: EnvRecord, req: AcquireRequest): Promise<string> {
  const p = envPaths(home, rec.name);
  return withEnvLock(home, rec.name, async () => {
    const s = await load(home, rec.name);
    const save = () => saveState(p.state, s);
    await gc(s, save);
    const hold = (hs: Holder[]) => { if (req.holder && !hs.some(same(req.holder))) hs.push(req.holder); };
    if (!s.disk || !(await isMounted(p.root))) {
      if (s.disk) await unmountImage(s.disk, async (d) => { s.disk = d; await save(); });
      await checkBase(rec);
      s.disk = null;
      await mountImage({ image: p.disk, format: 'qcow2', mountpoint: p.root, exportFile: p.exportFile, ...(rec.fstype ? { fstype: rec.fstype } : {}) },
        async (d) => { s.disk = d; await save(); });
    }
    hold(s.holders);
    if (req.pin) s.pinned = true;
    await save();
    const binds = [...(req.binds ?? []), ...(req.plan ? await req.plan(p.root) : [])];
    const wanted: MountSpec[] = [
      ...(req.system ? SYSTEM_MOUNTS : []),
      ...binds.map((b) => bindSpec(b.source, b.target, b.readOnly)),
    ];
    const mounted = new Set((await mounts()).map((m) => m.mountpoint));
    const fresh: Array<{ spec: MountSpec; hostTarget: string }> = [];
    for (const w of wanted) {
      let item = s.items.find((i) => i.target === w.target);
      if (item && !mounted.has(item.hostTarget)) { s.items.splice(s.items.indexOf(item), 1); item = undefined; }
      if (!item) {
        const hostTarget = await mkdirInside(p.root, w.target);
        item = { target: w.target, hostTarget, kind: SYSTEM_MOUNTS.includes(w) ? 'system' : 'bind', source: w.source, readOnly: /(^|,)ro(,|$)/.test(w.options), holders: [], pinned: false };
        s.items.push(item);
        fresh.push({ spec: w, hostTarget });
      }
      hold(item.holders);
      if (req.pin) item.pinned = true;
    }
    // Recorded before mounting: a crash right after mount(8) must not leak an unrecorded mount.
    await save();
    const { failed, why } = await mountAll(fresh, p.dir);
    if (failed.length > 0) {
      s.items = s.items.filter((i) => !failed.includes(i.hostTarget));
      await save();
      throw new JrError('JR_E_JOOT', `could not mount ${failed.join(', ')} in joot "${rec.name}": ${why}`);
    }
    for (const f of req.copyFiles ?? []) await copyHostFile(p.root, f);
    return p.root;
  });
}

/** An enter session leaves: drop `holder` everywhere and unmount what is no longer used. */
export async function release(home: string, name: string, holder: Holder): Promise<string[]> {
  return withEnvLock(home, name, () => releaseLocked(home, name, holder));
}

async function releaseLocked(home: string, name: string, holder: Holder | null, unpinTargets?: string[] | 'all'): Promise<string[]> {
  const p = envPaths(home, name);
  const s = await load(home, name);
  const save = () => saveState(p.state, s);
  if (holder) {
    s.holders = s.holders.filter((h) => !same(holder)(h));
    for (const i of s.items) i.holders = i.holders.filter((h) => !same(holder)(h));
  }
  if (unpinTargets === 'all') { s.pinned = false; for (const i of s.items) i.pinned = false; } else for (const t of unpinTargets ?? []) { const i = s.items.find((x) => x.target === t); if (i) i.pinned = false; }
  const problems = await gc(s, save);
  if (!s.disk && s.items.length === 0) await rm(p.state, { force: true });
  return problems;
}

/** `joot umount`: remove pins (of the given inside paths, or all), unmount what is unused.
 *  Caller holds the env lock when `locked` is true (delete). */
export async function unpin(home: string, name: string, targets: string[] | 'all', locked = false): Promise<string[]> {
  return locked ? releaseLocked(home, name, null, targets) : withEnvLock(home, name, () => releaseLocked(home, name, null, targets));
}

/** Live enter sessions and pins of an environment (no lock; for display and delete checks). */
export async function usage(home: string, name: string): Promise<{ mounted: boolean; sessions: Holder[]; pinned: boolean; items: Item[] }> {
  const s = await load(home, name);
  const sessions: Holder[] = [];
  for (const h of s.holders) if (await isAlive(h)) sessions.push(h);
  return { mounted: s.disk !== null, sessions, pinned: s.pinned, items: s.items };
}
