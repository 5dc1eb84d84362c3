// `"publish": "output"`: done/ gets the job's /job/output as NAME.output.tar.xz instead of the whole
// image (a .deb build returns kilobytes, not the 20+ MB image with sources and build tree). Read
// out of the image by the confined reader (src/image/extract-tree.ts), never by mounting it.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { JrError } from '../errors.js';
import { extractTree, imageHas, openImage } from '../image/extract-tree.js';
import { run } from '../proc.js';

/** Most files /job/output may hold for an output-only publish. */
export const OUTPUT_MAX_FILES = 100_000;

/** Pack /output of the job image into `outFile` (.tar.xz); returns its size and sha256. */
export async function packOutput(image: string, outFile: string): Promise<{ bytes: number; sha256: string; files: number }> {
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'jobrunner-output-'));
  try {
    // extractTree checks every name, caps files, bytes and depth, and never follows a link.
    const img = await openImage(image);
    let files: number;
    try {
      if (!await imageHas(img, '/output')) throw new JrError('JR_E_INPUT', 'the job asked for "publish": "output" but left no /job/output directory');
      files = (await extractTree(img, '/output', tmp, { maxFiles: OUTPUT_MAX_FILES })).entries;
    } finally {
      await img.close();
    }
    // Owners and permissions from the guest mean nothing here: numeric 0:0, modes kept.
    await run('tar', ['-C', tmp, '--owner=0', '--group=0', '--numeric-owner', '--sort=name', '-cJf', outFile, 'output'], { env: { XZ_OPT: '-1T0' } });
    const h = createHash('sha256');
    for await (const c of createReadStream(outFile)) h.update(c as Buffer);
    return { bytes: (await stat(outFile)).size, sha256: h.digest('hex'), files };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}
