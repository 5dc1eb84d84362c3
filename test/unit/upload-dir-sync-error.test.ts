// An upload whose final directory fsync fails (the rename into queue/ is not durable) is refused,
// and its file is taken back out of queue/: before, the record was removed but the file stayed,
// so intake ran it as an anonymous job the uploader had been told failed (src/service/uploads.ts).
import { mkdtemp, readdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { describe, expect, it, vi } from 'vitest';

const fail = vi.hoisted(() => ({ dir: '' }));
vi.mock('../../src/fsutil.js', async (orig) => {
  const real = await orig<typeof import('../../src/fsutil.js')>();
  return {
    ...real,
    fsyncPath: async (p: string): Promise<void> => {
      if (p === fail.dir) throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
      return real.fsyncPath(p);
    },
  };
});

const { Uploads } = await import('../../src/service/uploads.js');

describe('an upload whose rename into queue/ cannot be made durable', () => {
  it('is refused with the error, and leaves no file in queue/ and no record', async () => {
    const q = await mkdtemp(path.join(os.tmpdir(), 'jr-upload-dirsync-'));
    fail.dir = q;
    const u = new Uploads(q);
    const img = Buffer.alloc(4 << 20);
    img.writeUInt16LE(0xef53, 1080); // ext magic
    await expect(u.receive(Readable.from([img]), { name: 'n', owner: 'o', limits: { cap: 1 << 30, reserve: 0 }, declared: img.length, complete: () => true }))
      .rejects.toThrow(/EIO/);
    expect((await readdir(q)).filter((f) => f !== '.uploads')).toEqual([]);
    expect(await readdir(path.join(q, '.uploads'))).toEqual([]);
  });
});
