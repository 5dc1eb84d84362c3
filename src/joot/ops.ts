// joot's environment operations other than enter: create, list, delete, rename, mount, umount.
import { mkdir, rename as mv, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { JrError } from '../errors.js';
import { run } from '../proc.js';
import { mountsUnder } from '../image/mountinfo.js';
import { findProcesses } from '../procfs.js';
import type { JootConfig } from './config.js';
import { resolveImage } from './images.js';
import { acquire, unpin, usage } from './session.js';
import { checkName, envPaths, listRecords, readRecord, withEnvLock, withHomeLock, writeRecord, type EnvRecord } from './store.js';
import { invokingUser } from './users.js';

/** Create environment `name`: a qcow2 overlay backed (read-only) by the base image. */
export async function create(cfg: JootConfig, name: string, image: string | undefined, say: (m: string) => void = () => {}): Promise<EnvRecord> {
  checkName(name);
  const img = await resolveImage(cfg, image ?? cfg.defaultImage, say);
  const p = envPaths(cfg.home, name);
  return withHomeLock(cfg.home, async () => {
    await mkdir(path.dirname(p.dir), { recursive: true });
    try { await mkdir(p.dir); } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new JrError('JR_E_JOOT', `joot "${name}" already exists`);
      throw e;
    }
    try {
      // The overlay only stores blocks written inside the environment: creating it is O(1).
      await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', img.format, '-b', img.rootImg, '--', p.disk], { errorCode: 'JR_E_JOOT' });
      const rec: EnvRecord = {
        version: 1, name, image: img.name, imagePath: img.rootImg, imageFormat: img.format, imageSha256: img.sha256,
        fstype: img.fstype, creator: invokingUser(), created: new Date().toISOString(), automounts: [],
      };
      await writeRecord(cfg.home, rec);
      return rec;
    } catch (e) {
      await rm(p.dir, { recursive: true, force: true });
      throw e;
    }
  });
}

/** All environments. */
export async function list(cfg: JootConfig): Promise<EnvRecord[]> {
  return listRecords(cfg.home);
}

/** Refuse unless nothing at all is mounted in, or running from, the environment's directory. */
async function assertIdle(dir: string, name: string): Promise<void> {
  const left = await mountsUnder(dir);
  if (left.length > 0) throw new JrError('JR_E_JOOT', `joot "${name}" still has mounts: ${left.join(', ')}`);
  const daemons = await findProcesses((a) => /qemu-storage-daemon$/.test(a[0] ?? '') && a.some((x) => x.includes(dir + '/')));
  if (daemons.length > 0) throw new JrError('JR_E_JOOT', `joot "${name}" still has qemu-storage-daemon running (pid ${daemons.join(', ')})`);
}

/** Delete environments: unmount first, refuse one that is in use by an enter session. */
export async function remove(cfg: JootConfig, name: string): Promise<void> {
  await readRecord(cfg.home, name);
  const p = envPaths(cfg.home, name);
  await withHomeLock(cfg.home, () => withEnvLock(cfg.home, name, async () => {
    const u = await usage(cfg.home, name);
    if (u.sessions.length > 0) throw new JrError('JR_E_JOOT', `joot "${name}" is in use (joot enter, pid ${u.sessions.map((s) => s.pid).join(', ')})`);
    const problems = await unpin(cfg.home, name, 'all', true);
    if (problems.length > 0) throw new JrError('JR_E_JOOT', `cannot unmount joot "${name}": ${problems.join('; ')}`);
    // rm -r through a mount would delete the host directory bound there: check the kernel's view.
    await assertIdle(p.dir, name);
    await rm(p.dir, { recursive: true, force: true });
  }));
}

/** Rename an environment (not while it is mounted: mount points live inside its directory). */
export async function renameEnv(cfg: JootConfig, from: string, to: string): Promise<void> {
  checkName(to, 'NEW');
  const rec = await readRecord(cfg.home, from);
  const a = envPaths(cfg.home, from);
  const b = envPaths(cfg.home, to);
  await withHomeLock(cfg.home, () => withEnvLock(cfg.home, from, () => withEnvLock(cfg.home, to, async () => {
    if (await stat(b.dir).then(() => true, () => false)) throw new JrError('JR_E_JOOT', `joot "${to}" already exists`);
    if ((await usage(cfg.home, from)).mounted) throw new JrError('JR_E_JOOT', `joot "${from}" is mounted: joot umount ${from} first`);
    await assertIdle(a.dir, from);
    await mv(a.dir, b.dir);
    await writeRecord(cfg.home, { ...rec, name: to });
  })));
}

/** `joot mount NAME [DIR…]`: mount (pinned) the environment and its system dirs, bind DIRs at the same
 *  paths inside; with `always`, record DIRs as automounts for every enter. Returns the root path. */
export async function mountEnv(cfg: JootConfig, name: string, dirs: string[], o: { readOnly: boolean; always: boolean }): Promise<string> {
  if (process.getuid?.() !== 0) throw new JrError('JR_E_PERMISSION', 'joot mount needs root: run it with sudo');
  const rec = await readRecord(cfg.home, name);
  const abs = dirs.map((d) => path.resolve(d));
  for (const d of abs) {
    if (!(await stat(d).then((s) => s.isDirectory(), () => false))) throw new JrError('JR_E_USAGE', `Expected DIR to be a host directory, got ${d}`);
  }
  const root = await acquire(cfg.home, rec, { pin: true, system: true, binds: abs.map((d) => ({ source: d, target: d, readOnly: o.readOnly })) });
  if (o.always && abs.length > 0) {
    await withEnvLock(cfg.home, name, async () => {
      const cur = await readRecord(cfg.home, name);
      const keep = cur.automounts.filter((a) => !abs.includes(a.dir));
      await writeRecord(cfg.home, { ...cur, automounts: [...keep, ...abs.map((dir) => ({ dir, readOnly: o.readOnly }))] });
    });
  }
  return root;
}

/** `joot umount NAME [DIR…]`: unbind DIRs (and drop them from automounts), or unmount everything
 *  not used by a running enter. Returns problems and the sessions still using it. */
export async function umountEnv(cfg: JootConfig, name: string, dirs: string[]): Promise<{ problems: string[]; inUseBy: number[] }> {
  if (process.getuid?.() !== 0) throw new JrError('JR_E_PERMISSION', 'joot umount needs root: run it with sudo');
  await readRecord(cfg.home, name);
  const abs = dirs.map((d) => path.resolve(d));
  if (abs.length > 0) {
    await withEnvLock(cfg.home, name, async () => {
      const cur = await readRecord(cfg.home, name);
      await writeRecord(cfg.home, { ...cur, automounts: cur.automounts.filter((a) => !abs.includes(a.dir)) });
    });
  }
  const problems = await unpin(cfg.home, name, abs.length > 0 ? abs : 'all');
  return { problems, inUseBy: (await usage(cfg.home, name)).sessions.map((s) => s.pid) };
}
