// Tiny stand-ins for what scripts/build-base-image and scripts/mkimage make, built at test time in
// milliseconds: a base image directory that src/image/base.ts's loader accepts (a small ext4
// root.img made with mke2fs -d, placeholder kernel and initrd, a truthful image.json), and ext4 job
// images whose content tells the fake qemu (test/lib/fake-qemu.ts) what to do. Only a fake qemu
// can "boot" them: the kernel is a text file.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);
const SBIN = { PATH: `${process.env.PATH ?? '/usr/bin:/bin'}:/usr/sbin:/sbin` };

/** mke2fs -d: an ext4 image of `tree`, `size` (e.g. '2M'), no root needed, nothing mounted. */
export async function ext4Of(tree: string, out: string, size: string): Promise<string> {
  await rm(out, { force: true });
  await exec('mke2fs', ['-q', '-F', '-t', 'ext4', '-E', 'root_owner=0:0', '-d', tree, out, size], { env: { ...process.env, ...SBIN } });
  return out;
}

async function sha256(file: string): Promise<string> {
  return createHash('sha256').update(await readFile(file)).digest('hex');
}

/**
 * Make base-image/<name>/ under `baseDir` (returns baseDir, for --base-image-dir). The image.json
 * has the fields and the per-file sizes and digests scripts/build-base-image records.
 */
export async function fixtureBase(baseDir: string, name = 'default'): Promise<string> {
  const dir = path.join(baseDir, name);
  const tree = path.join(baseDir, `.${name}.tree`);
  await mkdir(path.join(tree, 'usr', 'sbin'), { recursive: true });
  await writeFile(path.join(tree, 'usr', 'sbin', 'construir'), '#!/bin/sh\n# fixture: no guest ever runs this\n');
  await mkdir(dir, { recursive: true });
  await ext4Of(tree, path.join(dir, 'root.img'), '1M');
  await writeFile(path.join(dir, 'vmlinuz'), 'fixture kernel: only a fake qemu accepts this\n');
  await writeFile(path.join(dir, 'initrd.img'), 'fixture initrd\n');
  const files: Record<string, { bytes: number; sha256: string }> = {};
  for (const f of ['root.img', 'vmlinuz', 'initrd.img']) {
    files[f] = { bytes: (await stat(path.join(dir, f))).size, sha256: await sha256(path.join(dir, f)) };
  }
  const now = new Date().toISOString();
  await writeFile(path.join(dir, 'image.json'), JSON.stringify({
    name, suite: 'fixture', arch: 'amd64', kernelVersion: '0.0.0-fixture', recipeHash: 'fixture', builtAt: now, files,
  }, null, 2) + '\n');
  for (const f of ['root.img', 'vmlinuz', 'initrd.img', 'image.json']) await chmod(path.join(dir, f), 0o644);
  await chmod(baseDir, 0o755);
  await chmod(dir, 0o755);
  await rm(tree, { recursive: true, force: true });
  return baseDir;
}

/**
 * A job image (ext4, `size`) whose bin/construir would run `script` and whose content selects the
 * fake qemu's `mode` (FAKEQEMU-MODE=…; `sleep` sets FAKEQEMU-SLEEP for mode slow). Returns its path.
 */
export async function fixtureJob(work: string, name: string, mode: string, opts: { sleep?: number; size?: string; files?: Record<string, string> } = {}): Promise<string> {
  const tree = path.join(work, `${name}.tree`);
  await rm(tree, { recursive: true, force: true });
  await mkdir(path.join(tree, 'bin'), { recursive: true });
  await writeFile(path.join(tree, 'bin', 'construir'), '#!/bin/sh\necho fixture job\n', { mode: 0o755 });
  const lines = [`FAKEQEMU-MODE=${mode}`];
  if (opts.sleep !== undefined) lines.push(`FAKEQEMU-SLEEP=${opts.sleep}`);
  await writeFile(path.join(tree, 'mode'), lines.join('\n') + '\n');
  for (const [rel, body] of Object.entries(opts.files ?? {})) {
    await mkdir(path.dirname(path.join(tree, rel)), { recursive: true });
    await writeFile(path.join(tree, rel), body);
  }
  const out = await ext4Of(tree, path.join(work, `${name}.img`), opts.size ?? '2M');
  await rm(tree, { recursive: true, force: true });
  return out;
}
