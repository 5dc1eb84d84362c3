// jobrunner submit -o unpacks the API's output.tar by piping the response into GNU tar. tar exits
// once it has read the end-of-archive blocks, which may be before the response ends (the server
// ends it only after xz reported success): that must not fail a complete download (it did, as
// "Premature close", in e2e/unshare-deps), while a stream that breaks or a bad archive still fails.
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { unpackOutput } from '../../src/cli/submit-client.js';

let dir: string;
let archive: Buffer;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'jr-unpack-'));
  await mkdir(path.join(dir, 'src', 'output', 'sub'), { recursive: true });
  await writeFile(path.join(dir, 'src', 'output', 'sub', 'a.txt'), 'hello\n');
  await writeFile(path.join(dir, 'src', 'output', 'big'), Buffer.alloc(20_000, 0x62));
  archive = execFileSync('tar', ['-C', path.join(dir, 'src'), '-cf', '-', 'output']);
  vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
});
afterEach(async () => {
  vi.restoreAllMocks();
  await rm(dir, { recursive: true, force: true });
});

/** A stream that sends `chunks`, then, after `ms`, ends (or breaks, when `error` is given). */
function slowEnd(chunks: Buffer[], ms: number, error?: Error): Readable {
  const s = new Readable({ read() { /* pushed below */ } });
  for (const c of chunks) s.push(c);
  setTimeout(() => { if (error) s.destroy(error); else s.push(null); }, ms);
  return s;
}

describe('unpackOutput from a stream', () => {
  it('unpacks a whole archive whose stream ends well after tar has exited', async () => {
    const out = path.join(dir, 'out');
    // trailing zero padding, as a record-padded stream may carry past the end-of-archive blocks
    await unpackOutput(out, slowEnd([archive, Buffer.alloc(64 * 1024)], 400));
    expect(await readFile(path.join(out, 'output', 'sub', 'a.txt'), 'utf8')).toBe('hello\n');
  });

  it('fails when the stream breaks, even after tar read a whole archive', async () => {
    await expect(unpackOutput(path.join(dir, 'out'), slowEnd([archive], 300, new Error('socket hang up'))))
      .rejects.toThrow(/downloading \/job\/output failed: socket hang up/);
  });

  it('fails with tar\'s exit code on an archive cut short inside a file, and on bytes that are no archive', async () => {
    await expect(unpackOutput(path.join(dir, 'o1'), slowEnd([archive.subarray(0, 4000)], 50)))
      .rejects.toThrow(/unpacking \/job\/output into .*o1 failed \(tar exit 2\)/);
    await expect(unpackOutput(path.join(dir, 'o2'), slowEnd([Buffer.alloc(4096, 0x41), Buffer.alloc(1 << 20, 0x41)], 300)))
      .rejects.toThrow(/unpacking \/job\/output into .*o2 failed \(tar exit 2\)/);
  });
});
