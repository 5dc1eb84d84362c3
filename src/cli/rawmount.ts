// rawmount: mount a base image read-write to edit it (what kpartx + mount did in the old system), and
// unmount it leaving no mount, loop device or daemon behind. Base images only: see src/image/mount.ts.
import { parseArgs } from 'node:util';
import { createHash } from 'node:crypto';
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { JrError, isJrError, messageOf } from '../errors.js';
import { loadState, mountImage, saveState, unmountImage, type MountState } from '../image/mount.js';
import { mountsUnder } from '../image/mountinfo.js';
import { refreshMeta } from '../image/meta.js';

const HELP = `Usage:
  rawmount IMAGE [MOUNTPOINT] [--fuse] [--read-only]
  rawmount --umount MOUNTPOINT
  rawmount --list

Mount a base image so it can be edited, and unmount it cleanly.
  IMAGE        raw filesystem image (e.g. base-image/default/root.img), raw partitioned disk
               (each partition with a filesystem is mounted at MOUNTPOINT/N), or qcow2/vmdk/vdi/
               vhdx/vpc (opened with qemu-storage-daemon, exported over FUSE, then mounted).
  MOUNTPOINT   default /mnt/rawmount/<image name> (root) or ~/rawmount/<image name>; created if
               missing and removed again by --umount.
  --fuse       mount with fuse2fs instead of a loop device: no root needed where unprivileged FUSE
               works (fusermount installed, /dev/fuse readable and writable by you: mode 0666,
               the usual default; rawmount says what to change when it is not); ext2/3/4 only.
  --read-only  mount read-only (nothing is written to IMAGE).
  --umount     unmount everything rawmount set up for MOUNTPOINT: mounts, loop devices, the
               qemu-storage-daemon. If IMAGE is a root.img next to an image.json (a base image
               directory), image.json is then refreshed: files["root.img"] sha256/bytes and
               "updatedAt", so jobs record which base they ran on.
  --list       show active rawmounts.
Only mount images you own: never a job's image (the host kernel would parse untrusted data).
State is kept in $RAWMOUNT_STATE_DIR (default /run/rawmount as root).`;

function isRoot(): boolean { return process.getuid?.() === 0; }

/** Where rawmount keeps one state file per mount point. */
export function stateDir(): string {
  if (process.env.RAWMOUNT_STATE_DIR) return process.env.RAWMOUNT_STATE_DIR;
  if (isRoot()) return '/run/rawmount';
  return path.join(process.env.XDG_RUNTIME_DIR ?? os.tmpdir(), `rawmount-${process.getuid?.() ?? 'u'}`);
}

function keyFor(mountpoint: string): string {
  return createHash('sha256').update(path.resolve(mountpoint)).digest('hex').slice(0, 16);
}

function defaultMountpoint(image: string): string {
  const stem = path.basename(image).replace(/\.[^.]+$/, '') || 'image';
  const parent = path.basename(path.dirname(path.resolve(image)));
  const name = stem === 'root' ? parent : stem; // base-image/default/root.img -> "default"
  return isRoot() ? path.join('/mnt/rawmount', name) : path.join(os.homedir(), 'rawmount', name);
}

async function doMount(image: string, mp: string | undefined, fuse: boolean, readOnly: boolean): Promise<number> {
  const st = await stat(image).catch(() => null);
  if (!st?.isFile()) throw new JrError('JR_E_USAGE', `Expected \`IMAGE\` to be an image file, got ${image}`);
  if (!fuse && !isRoot()) {
    throw new JrError('JR_E_PERMISSION', 'rawmount needs root for loop devices; run it with sudo, or use --fuse (fuse2fs, ext2/3/4)');
  }
  const mountpoint = path.resolve(mp ?? defaultMountpoint(image));
  const dir = stateDir();
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const key = keyFor(mountpoint);
  const file = path.join(dir, `${key}.json`);
  if (await loadState(file)) throw new JrError('JR_E_USAGE', `${mountpoint} is already rawmounted; run: rawmount --umount ${mountpoint}`);
  const s = await mountImage({ image, mountpoint, readOnly, mode: fuse ? 'fuse' : 'loop', exportFile: path.join(dir, `${key}.raw`) },
    (x) => saveState(file, x));
  process.stdout.write(`Mounted ${s.image} (${s.format}${s.readOnly ? ', read-only' : ''}) at ${s.mountpoint}\n`);
  for (const p of s.partitions) process.stdout.write(`  partition ${p.nr} (${p.fstype}) at ${p.target}\n`);
  process.stdout.write(`When done: rawmount --umount ${s.mountpoint}\n`);
  return 0;
}

async function doUmount(mp: string): Promise<number> {
  const mountpoint = path.resolve(mp);
  const file = path.join(stateDir(), `${keyFor(mountpoint)}.json`);
  const s = await loadState<MountState>(file);
  if (!s) throw new JrError('JR_E_USAGE', `nothing rawmounted at ${mountpoint} (see rawmount --list)`);
  await unmountImage(s, (x) => saveState(file, x));
  const left = await mountsUnder(mountpoint);
  if (left.length > 0) throw new JrError('JR_E_PROCESS', `still mounted after unmount: ${left.join(', ')}`);
  await rm(file, { force: true });
  process.stdout.write(`Unmounted ${mountpoint}\n`);
  if (!s.readOnly) {
    const r = await refreshMeta(s.image);
    if (r) process.stdout.write(`${r.changed ? 'Updated' : 'Unchanged'} ${path.join(path.dirname(s.image), 'image.json')}: root.img sha256 ${r.digest.sha256}\n`);
  }
  return 0;
}

async function doList(): Promise<number> {
  const dir = stateDir();
  const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith('.json'));
  for (const n of names) {
    const s = await loadState<MountState>(path.join(dir, n));
    if (s) process.stdout.write(`${s.mountpoint}\t${s.image}\t${s.format}${s.readOnly ? '\tro' : ''}\n`);
  }
  return 0;
}

/** rawmount entry point; returns the process exit code. */
export async function main(argv: string[]): Promise<number> {
  try {
    const { values, positionals } = parseArgs({
      args: argv, allowPositionals: true, strict: true,
      options: { umount: { type: 'boolean' }, fuse: { type: 'boolean' }, 'read-only': { type: 'boolean' },
        list: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    });
    if (values.help) { process.stdout.write(HELP + '\n'); return 0; }
    if (values.list) return await doList();
    if (values.umount) {
      if (positionals.length !== 1) throw new JrError('JR_E_USAGE', 'Expected `--umount` to be followed by one MOUNTPOINT');
      return await doUmount(positionals[0]!);
    }
    if (positionals.length < 1 || positionals.length > 2) throw new JrError('JR_E_USAGE', `Expected IMAGE [MOUNTPOINT], got ${positionals.length} arguments`);
    return await doMount(positionals[0]!, positionals[1], values.fuse ?? false, values['read-only'] ?? false);
  } catch (e) {
    process.stderr.write(`rawmount: ${messageOf(e)}\n`);
    if (isJrError(e, 'JR_E_USAGE') || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write('Try: rawmount --help\n');
      return 2;
    }
    return 1;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}
