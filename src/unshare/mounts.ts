// The host-side mounts of an unshare job, all of OUR filesystems (never the job's submitted
// image): the shifted base root (loop, read-only), a scratch ext4 for the overlay's upper layer,
// the overlay itself, and the trusted job image. mount(8) sets up and auto-clears loop devices.
import { readdir, readFile } from 'node:fs/promises';
import { JrError } from '../errors.js';
import { run } from '../proc.js';

const SBIN = { PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin` };

/** Mount an ext4 image file at `dir` through a loop device (read-only when `ro`); nosuid,nodev always. */
export async function mountLoop(image: string, dir: string, ro: boolean): Promise<void> {
  const opts = ['loop', ro ? 'ro' : 'rw', 'nosuid', 'nodev', 'noatime'].join(',');
  await run('mount', ['-t', 'ext4', '-o', opts, '--', image, dir], { env: SBIN, errorCode: 'JR_E_PROCESS' });
}

/** Overlay `lowers` (read-only, topmost first) with `upper`/`work` (on a writable filesystem) at `dir`. */
export async function mountOverlay(lowers: string[], upper: string, work: string, dir: string): Promise<void> {
  if (lowers.length === 0) throw new JrError('JR_E_INTERNAL', 'an overlay needs a lower layer');
  for (const p of [...lowers, upper, work]) {
    if (/[,:\\\n]/.test(p)) throw new JrError('JR_E_INTERNAL', `overlay path with a separator in it: ${JSON.stringify(p)}`);
  }
  await run('mount', ['-t', 'overlay', '-o', `lowerdir=${lowers.join(':')},upperdir=${upper},workdir=${work},nosuid,nodev`, 'overlay', dir],
    { env: SBIN, errorCode: 'JR_E_PROCESS' });
}

/**
 * Unmount `dir` if it is a mount point; a busy one is detached lazily so cleanup always finishes.
 * True when it had to be: the filesystem then stays mounted (and writable if it was) until its
 * last user lets go, which the caller must not mistake for a finished one.
 */
export async function unmount(dir: string): Promise<boolean> {
  if (!(await mountedAt(dir))) return false;
  const r = await run('umount', ['--', dir], { env: SBIN, reject: false });
  if (r.exitCode === 0) return false;
  await run('umount', ['-l', '--', dir], { env: SBIN, reject: false });
  return true;
}

/** Discard the free blocks of a mounted filesystem: they become holes in its image file. */
export async function trim(dir: string): Promise<void> {
  await run('fstrim', ['--', dir], { env: SBIN, reject: false });
}

/** True when something is mounted exactly at `dir` (from /proc/self/mountinfo). */
export async function mountedAt(dir: string): Promise<boolean> {
  return (await mountsUnder(dir)).includes(dir);
}

/** Every mount: its device (major:minor) and mount point (octal escapes decoded). */
async function mountTable(): Promise<Array<{ dev: string; mp: string }>> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  const out: Array<{ dev: string; mp: string }> = [];
  for (const line of info.split('\n')) {
    const f = line.split(' ');
    if (f.length < 5) continue;
    out.push({ dev: f[2]!, mp: f[4]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))) });
  }
  return out;
}

/** Mount points at or below `prefix`, deepest first: the unmount order. */
export async function mountsUnder(prefix: string): Promise<string[]> {
  const out = (await mountTable()).map((m) => m.mp).filter((mp) => mp === prefix || mp.startsWith(prefix + '/'));
  return out.sort((a, b) => b.length - a.length);
}

/** Loop devices (major:minor) whose backing file is `p` or below it (sysfs names real paths). */
export async function loopDevicesUnder(p: string): Promise<string[]> {
  const out: string[] = [];
  for (const d of await readdir('/sys/block').catch(() => [] as string[])) {
    if (!d.startsWith('loop')) continue;
    const file = (await readFile(`/sys/block/${d}/loop/backing_file`, 'utf8').catch(() => '')).trim();
    if (file !== p && !file.startsWith(p + '/')) continue;
    const dev = (await readFile(`/sys/block/${d}/dev`, 'utf8').catch(() => '')).trim();
    if (dev) out.push(dev);
  }
  return out;
}

/** Where the filesystems in files below `dir` are mounted through loop devices, deepest first. */
export async function loopMountsUnder(dir: string): Promise<string[]> {
  const devs = new Set(await loopDevicesUnder(dir));
  if (devs.size === 0) return [];
  return (await mountTable()).filter((m) => devs.has(m.dev)).map((m) => m.mp).sort((a, b) => b.length - a.length);
}

/** Unmount everything under `prefix` (a crashed run's leftovers), deepest first. */
export async function unmountAll(prefix: string): Promise<void> {
  for (const mp of await mountsUnder(prefix)) await unmount(mp);
}
