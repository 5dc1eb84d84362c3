// Base images on disk: base-image/<name>/{root.img,vmlinuz,initrd.img,image.json}, made by
// scripts/build-base-image. Loading one checks it is complete before any VM is started.
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { JrError } from '../errors.js';

export interface BaseImageMeta {
  name: string; suite: string; arch: string; kernelVersion: string;
  recipeHash: string; builtAt: string; updatedAt?: string;
  files: Record<string, { bytes: number; sha256: string }>;
}

export interface BaseImage {
  name: string;
  dir: string;
  root: string;
  kernel: string;
  initrd: string;
  /** Debian's stock initramfs-tools initrd of the same kernel, when built (benchmarks). */
  initrdStock: string;
  /** sha256 of root.img as recorded in image.json (refreshed by rawmount after edits). */
  rootSha256: string;
  meta: BaseImageMeta;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** True when `name` is acceptable as a base image name (it becomes a directory name). */
export function isValidBaseName(name: string): boolean {
  return NAME.test(name);
}

/** Load and check base image `name` under `baseDir`; throws JR_E_BASE_IMAGE with a fix-it hint. */
export async function loadBaseImage(baseDir: string, name: string): Promise<BaseImage> {
  if (!isValidBaseName(name)) {
    throw new JrError('JR_E_BASE_IMAGE', `Expected a base image name of [A-Za-z0-9._-] (1-64 chars), got ${JSON.stringify(name)}`);
  }
  const dir = path.resolve(baseDir, name);
  const hint = `build it with: scripts/build-base-image --name ${name}`;
  let meta: BaseImageMeta;
  try {
    meta = JSON.parse(await readFile(path.join(dir, 'image.json'), 'utf8')) as BaseImageMeta;
  } catch (e) {
    const missing = (e as NodeJS.ErrnoException).code === 'ENOENT';
    throw new JrError('JR_E_BASE_IMAGE', missing
      ? `base image '${name}' not found in ${baseDir} (no image.json); ${hint}`
      : `base image '${name}' has an unreadable image.json: ${(e as Error).message}; ${hint} --force`, { cause: e });
  }
  for (const f of ['root.img', 'vmlinuz', 'initrd.img']) {
    const want = meta.files?.[f];
    let st;
    try { st = await stat(path.join(dir, f)); } catch { st = null; }
    if (!want || !st || !st.isFile()) {
      throw new JrError('JR_E_BASE_IMAGE', `base image '${name}' is incomplete: ${f} is missing; ${hint} --force`);
    }
    if (st.size !== want.bytes) {
      throw new JrError('JR_E_BASE_IMAGE', `base image '${name}' is corrupt: ${f} is ${st.size} bytes, image.json says ${want.bytes}; ${hint} --force`);
    }
  }
  return {
    name, dir, meta,
    root: path.join(dir, 'root.img'),
    kernel: path.join(dir, 'vmlinuz'),
    initrd: path.join(dir, 'initrd.img'),
    initrdStock: path.join(dir, 'initrd-stock.img'),
    rootSha256: meta.files['root.img']!.sha256,
  };
}
