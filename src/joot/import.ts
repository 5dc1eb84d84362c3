// `joot import FILE`: turn a raw, qcow2, vmdk (VMware) or AMI-style partitioned raw disk into a base
// image directory (root.img = the root filesystem as a sparse raw file, image.json, and the kernel and
// initrd when the image has them), usable by joot and, format-wise, by jobrunner.
//
// Importing is the operator declaring FILE a base image they own: only then is it opened by qemu's
// format drivers and mounted (read-only, without journal replay) on the host. See image/mount.ts.
import { copyFile, mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { JrError } from '../errors.js';
import { run } from '../proc.js';
import { blkid, imageInfo, isMountableFs, probeLayout, type Partition } from '../image/probe.js';
import { startExport, stopExport } from '../image/qsd.js';
import { mountImage, unmountImage } from '../image/mount.js';
import { resolveInside } from '../image/chroot.js';
import { mountsUnder } from '../image/mountinfo.js';
import { digestFile, writeMeta, type ImageMeta } from '../image/meta.js';
import type { JootConfig } from './config.js';
import { checkName } from './store.js';

// GPT "Linux root (x86-64)" and "Linux root (ARM64)" partition types (Discoverable Partitions Spec).
const ROOT_TYPES = ['4f68bce3-e8cd-4db1-96e7-fbcaf984b709', 'b921b045-1df0-41c3-af44-4c6f280d3fae'];

/** Which partition holds the root filesystem (pure): --partition, else a GPT root type, else a root
 *  label, else the largest Linux filesystem. */
export function chooseRoot(parts: Partition[], want?: number): Partition {
  const linux = parts.filter((p) => isMountableFs(p.fstype) && p.fstype !== 'vfat');
  const pick = want !== undefined ? parts.find((p) => p.nr === want)
    : linux.find((p) => ROOT_TYPES.includes(p.partType))
      ?? linux.find((p) => /^(cloudimg-rootfs|root|rootfs|\/)$/i.test(p.label))
      ?? [...linux].sort((a, b) => b.size - a.size)[0];
  if (!pick) throw new JrError('JR_E_BASE_IMAGE', `Expected a partition with a Linux filesystem, got ${parts.map((p) => `${p.nr}:${p.fstype || 'none'}`).join(' ') || 'no partitions'}`);
  if (!isMountableFs(pick.fstype)) throw new JrError('JR_E_BASE_IMAGE', `Expected partition ${pick.nr} to hold a filesystem, got ${pick.fstype || 'none'}`);
  return pick;
}

/** Facts for image.json read from the mounted root: suite, arch, kernel, packages. */
async function inspect(root: string, out: string): Promise<Partial<ImageMeta>> {
  const read = async (p: string) => readFile(await resolveInside(root, p), 'utf8').catch(() => '');
  const osr = Object.fromEntries((await read('/etc/os-release')).split('\n').map((l) => l.split('=')).filter((f) => f.length >= 2)
    .map(([k, ...v]) => [k, v.join('=').replace(/^"|"$/g, '')]));
  const status = await read('/var/lib/dpkg/status');
  const packages = status.split('\n\n').filter((b) => /^Status: install ok installed$/m.test(b))
    .map((b) => `${/^Package: (.+)$/m.exec(b)?.[1]}=${/^Version: (.+)$/m.exec(b)?.[1]}`).sort();
  const arch = /^Architecture: (.+)$/m.exec(status.split('\n\n').find((b) => /^Package: base-files$/m.test(b)) ?? '')?.[1];
  const meta: Partial<ImageMeta> = { suite: osr.VERSION_CODENAME || osr.ID || 'unknown', ...(arch ? { arch } : {}), packages };
  const boot = await resolveInside(root, '/boot');
  const kernels = (await readdir(boot).catch(() => [] as string[])).filter((f) => /^vmlinuz-/.test(f)).sort();
  const k = kernels[kernels.length - 1];
  if (k) {
    const version = k.slice('vmlinuz-'.length);
    meta.kernelVersion = version;
    // Through resolveInside: a symlink in the image must not make us copy a host file.
    await copyFile(await resolveInside(root, `/boot/${k}`), path.join(out, 'vmlinuz'));
    const initrd = await resolveInside(root, `/boot/initrd.img-${version}`);
    if (await stat(initrd).then(() => true, () => false)) await copyFile(initrd, path.join(out, 'initrd.img'));
  }
  return meta;
}

/** Import FILE as base image `name` in cfg.importDir; returns the new image directory. */
export async function importImage(cfg: JootConfig, file: string, o: { name?: string; partition?: number; say?: (m: string) => void } = {}): Promise<string> {
  const src = path.resolve(file);
  const name = o.name ?? path.basename(src).replace(/(\.(img|raw|qcow2|vmdk|vdi|vhdx|vhd|ami|disk))+$/i, '');
  checkName(name, '--name');
  const dest = path.join(cfg.importDir, name);
  if (await stat(dest).then(() => true, () => false)) throw new JrError('JR_E_USAGE', `base image "${name}" already exists at ${dest}; choose another --name`);
  const info = await imageInfo(src);
  const tmp = path.join(cfg.importDir, `.import-${name}-${process.pid}`);
  await mkdir(tmp, { recursive: true });
  try {
    // A raw view of the source to read its partition table from.
    let view = src;
    const exportFile = path.join(tmp, 'source.raw');
    const daemon = info.format === 'raw' ? null : await startExport({ image: src, format: info.format, exportFile, pidFile: exportFile + '.pid', writable: false });
    let part: Partition | null = null;
    try {
      if (daemon) view = exportFile;
      const layout = await probeLayout(view);
      if (layout.kind === 'partitioned') part = chooseRoot(layout.partitions, o.partition);
    } finally {
      if (daemon) await stopExport(daemon, exportFile, exportFile + '.pid');
    }
    // Copy just the root filesystem, sparse, with qemu's own driver; the JSON form keeps commas in
    // paths from being read as options.
    const file0 = { driver: 'file', filename: src };
    const inner = info.format === 'raw' ? file0 : { driver: info.format, file: file0 };
    const source = part ? { driver: 'raw', offset: part.offset, size: part.size, file: inner } : { driver: info.format, file: file0 };
    o.say?.(`copying ${part ? `partition ${part.nr} (${part.fstype}) of ` : ''}${src} (${info.format})`);
    const rootImg = path.join(tmp, 'root.img');
    await run('qemu-img', ['convert', '-O', 'raw', `json:${JSON.stringify(source)}`, rootImg], { errorCode: 'JR_E_BASE_IMAGE' });
    const fstype = (await blkid(rootImg)).TYPE;
    if (!fstype || !isMountableFs(fstype)) throw new JrError('JR_E_BASE_IMAGE', `Expected the root of ${src} to be a filesystem, got ${fstype ?? 'nothing blkid recognises'}`);
    const mnt = path.join(tmp, 'mnt');
    const m = await mountImage({ image: rootImg, format: 'raw', fstype, mountpoint: mnt, readOnly: true });
    let facts: Partial<ImageMeta>;
    try { facts = await inspect(mnt, tmp); } finally { await unmountImage(m); }
    const files: ImageMeta['files'] = {};
    for (const f of ['root.img', 'vmlinuz', 'initrd.img']) {
      if (await stat(path.join(tmp, f)).then(() => true, () => false)) files[f] = await digestFile(path.join(tmp, f));
    }
    const importedFrom = { file: src, format: info.format, ...(part ? { partition: part.nr } : {}) };
    await writeMeta(path.join(tmp, 'image.json'), {
      name, ...facts, fstype, importedFrom,
      // jobrunner records the recipe of each base; for an import the recipe is "this file, this way".
      recipeHash: createHash('sha256').update(JSON.stringify({ importedFrom, source: files['root.img']?.sha256 })).digest('hex'),
      builtAt: new Date().toISOString(), files,
    });
    await rename(tmp, dest);
    return dest;
  } catch (e) {
    // Never rm -r through a mount that failed to go away.
    if ((await mountsUnder(tmp)).length === 0) await rm(tmp, { recursive: true, force: true });
    throw e;
  }
}
