// Base image metadata (base-image/<name>/image.json): digests of the files, and the refresh done after
// an edit so every job and joot environment can record exactly which base it ran on.
import { createReadStream } from 'node:fs';
import { readFile, stat, writeFile, rename } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { tempName } from '../fsutil.js';
import { JrError } from '../errors.js';

export interface FileDigest { bytes: number; sha256: string }

export interface ImageMeta {
  name: string;
  suite?: string;
  arch?: string;
  kernelVersion?: string;
  files: Record<string, FileDigest>;
  updatedAt?: string;
  [k: string]: unknown;
}

/** sha256 (hex) and apparent size of a file, streamed. */
export async function digestFile(file: string): Promise<FileDigest> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return { bytes: (await stat(file)).size, sha256: h.digest('hex') };
}

/** Read and minimally validate an image.json. */
export async function readMeta(file: string): Promise<ImageMeta> {
  let j: unknown;
  try { j = JSON.parse(await readFile(file, 'utf8')); } catch (e) {
    throw new JrError('JR_E_BASE_IMAGE', `cannot read ${file}: ${(e as Error).message}`, { cause: e });
  }
  const m = j as Partial<ImageMeta>;
  if (typeof m !== 'object' || m === null || typeof m.name !== 'string') {
    throw new JrError('JR_E_BASE_IMAGE', `Expected \`name\` in ${file} to be a string, got ${typeof m?.name}`);
  }
  if (typeof m.files !== 'object' || m.files === null) {
    throw new JrError('JR_E_BASE_IMAGE', `Expected \`files\` in ${file} to be an object, got ${JSON.stringify(m.files)}`);
  }
  return m as ImageMeta;
}

/** Write an image.json atomically (temp + rename in the same directory). */
export async function writeMeta(file: string, meta: ImageMeta): Promise<void> {
  const tmp = tempName(path.dirname(file), path.basename(file));
  await writeFile(tmp, JSON.stringify(meta, null, 2) + '\n');
  await rename(tmp, file);
}

/** The image.json that describes `image`, when `image` is the root.img of a base image directory
 *  (…/<name>/root.img next to an image.json); otherwise null. */
export async function metaFileFor(image: string): Promise<string | null> {
  const abs = path.resolve(image);
  if (path.basename(abs) !== 'root.img') return null;
  const f = path.join(path.dirname(abs), 'image.json');
  try { await stat(f); return f; } catch { return null; }
}

/** After an edit: recompute root.img's digest into its image.json and stamp updatedAt when it changed.
 *  Returns the new digest, or null when `image` is not a base image's root.img. */
export async function refreshMeta(image: string): Promise<{ digest: FileDigest; changed: boolean } | null> {
  const f = await metaFileFor(image);
  if (!f) return null;
  const meta = await readMeta(f);
  const digest = await digestFile(image);
  const old = meta.files['root.img'];
  const changed = !old || old.sha256 !== digest.sha256 || old.bytes !== digest.bytes;
  if (changed) {
    meta.files['root.img'] = digest;
    meta.updatedAt = new Date().toISOString();
    await writeMeta(f, meta);
  }
  return { digest, changed };
}
