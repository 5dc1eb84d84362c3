// A job's output as a tar stream (for the HTTP API's output.tar): the tree is first extracted with
// all of extractTree's checks and caps into a private temporary directory of ours, then GNU tar
// (on our own files, not the image) writes it, holes as sparse members. The directory is removed
// when the stream ends, fails or is destroyed by the reader.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { spawn } from '../proc.js';
import { extractTree, type ExtractCaps } from './extract-tree.js';
import type { DebugfsImage } from './debugfs.js';

/** A tar (GNU format, sparse members, owners 0:0) of `p` from the image, as extractTree would write it. */
export async function tarTree(src: string | DebugfsImage, p: string, caps: Partial<ExtractCaps> = {}): Promise<Readable> {
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'jr-tar-'));
  const cleanup = (): Promise<void> => rm(tmp, { recursive: true, force: true });
  try {
    await extractTree(src, p, tmp, caps);
    const members = p === '/' ? ['.'] : [path.posix.basename(p)];
    const { child } = await spawn('tar', ['--sparse', '--format=gnu', '--numeric-owner', '--owner=0', '--group=0', '-C', tmp, '-cf', '-', '--', ...members]);
    const out = new PassThrough();
    let stderr = '';
    child.stderr!.on('data', (b: Buffer) => { if (stderr.length < 4096) stderr += b.toString(); });
    child.stdout!.pipe(out);
    void child.then((r) => {
      if (r.exitCode !== 0) out.destroy(new Error(`tar exited with ${r.exitCode ?? r.signal}: ${stderr.trim()}`));
    }).finally(cleanup);
    out.on('close', () => { if (child.exitCode === null) child.kill('SIGKILL'); });
    return out;
  } catch (e) {
    await cleanup();
    throw e;
  }
}
