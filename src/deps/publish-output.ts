// `"publish": "output"`: done/ gets the job's /job/output as NAME.output.tar.xz instead of the whole
// image (a .deb build returns kilobytes, not the 20+ MB image with sources and build tree). Read
// out of the image in userspace (debugfs, names checked first), never by mounting it.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { JrError } from '../errors.js';
import { checkTreeNames, dumpTree, listDir } from '../image/ext.js';
import { run } from '../proc.js';

/** Most files /job/output may hold for an output-only publish. */
export const OUTPUT_MAX_FILES = 100_000;

/** Pack /output of the job image into `outFile` (.tar.xz); returns its size and sha256. */
export async function packOutput(image: string, outFile: string): Promise<{ bytes: number; sha256: string; files: number }> {
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'jobrunner-output-'));
  try {
    if ((await listDir(image, '/output')) === null) throw new JrError('JR_E_INPUT', 'the job asked for "publish": "output" but left no /job/output directory');
    const files = await checkTreeNames(image, '/output', OUTPUT_MAX_FILES);
    await dumpTree(image, '/output', tmp);
    // Owners and permissions from the guest mean nothing here: numeric 0:0, modes kept.
    await run('tar', ['-C', tmp, '--owner=0', '--group=0', '--numeric-owner', '--sort=name', '-cJf', outFile, 'output'], { env: { XZ_OPT: '-1T0' } });
    const h = createHash('sha256');
    for await (const c of createReadStream(outFile)) h.update(c as Buffer);
    return { bytes: (await stat(outFile)).size, sha256: h.digest('hex'), files };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}
