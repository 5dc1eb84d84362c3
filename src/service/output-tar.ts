// A finished job's /job/output as a tar stream, read from its result image without mounting:
// the .img.xz is decompressed (memory-bounded) to a sparse temp file and the tree is read by the
// confined image reader (image/tar-tree.ts: extractTree's name checks and caps, then GNU tar on
// our own copy). One function, so the route does not care how the image is read.
import { constants } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { JrError } from '../errors.js';
import { imageHas } from '../image/extract-tree.js';
import { tarTree } from '../image/tar-tree.js';
import { spawnLean } from '../proc.js';
import type { ResultForm } from '../spool/record.js';
import { decompressFile } from '../xz/decompress.js';

/**
 * Tar stream of the job's /job/output from a published result of either form: an image is read
 * as below; a NAME.output.tar.xz ("publish": "output") is already that tar, packed by us from
 * the confined reader's copy (deps/publish-output.ts), so it is only decompressed.
 */
export async function resultOutputTar(file: string, form: ResultForm, sizeCap: number): Promise<{ stream: Readable; cleanup: () => Promise<void> }> {
  if (form === 'image') return outputTar(file, sizeCap);
  // Opened here, before the route sends its 200: a result that is gone or unreadable is a 404 with
  // a reason, not a reset after the headers; and xz reads the very file that was checked.
  const fh = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW).catch((e: NodeJS.ErrnoException) => {
    throw new JrError('JR_E_NOT_FOUND', `the result ${path.basename(file)} cannot be read (${e.code ?? e.message})`, { cause: e });
  });
  let xz: ReturnType<typeof spawnLean>;
  try {
    xz = spawnLean('xz', ['-dc', '--memlimit=256MiB'], { stdin: fh.fd });
  } catch (e) {
    await fh.close();
    throw e;
  }
  void xz.done.finally(() => fh.close());
  const out = new PassThrough();
  let stderr = '';
  xz.stderr.on('data', (b: Buffer) => { if (stderr.length < 2048) stderr += b.toString(); });
  // The tar ends only once xz has said it decoded everything: a corrupt file is an error, not a short tar.
  xz.stdout.pipe(out, { end: false });
  void xz.done.then((r) => {
    if (r.exitCode === 0) out.end();
    else out.destroy(new Error(`xz -d of ${path.basename(file)} failed (${r.exitCode ?? r.signal}): ${stderr.trim()}`));
  });
  return { stream: out, cleanup: async () => { xz.kill('SIGKILL'); await xz.done; } };
}

/** Tar stream of /output inside result `xzFile`; call cleanup() when the stream is done. */
export async function outputTar(xzFile: string, sizeCap: number): Promise<{ stream: Readable; cleanup: () => Promise<void> }> {
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'jobrunner-outtar-'));
  const cleanup = (): Promise<void> => rm(tmp, { recursive: true, force: true });
  try {
    const image = path.join(tmp, 'image.img');
    await decompressFile(xzFile, image, { sizeCap });
    if (!await imageHas(image, '/output')) throw new JrError('JR_E_NOT_FOUND', 'the job left no /job/output');
    const stream = await tarTree(image, '/output');
    // tarTree has copied the tree out before it returns: the decompressed image can go now.
    await rm(image, { force: true });
    return { stream, cleanup: async () => { stream.destroy(); await cleanup(); } };
  } catch (e) {
    await cleanup();
    throw e;
  }
}
