// An upload whose periodic datasync fails is refused, not acknowledged (src/service/uploads.ts).
// Linux reports a writeback error to an open file once and then marks the pages clean, so the
// final fsync would succeed on a file missing data. The queue's file handle is replaced by one
// whose first datasync fails with EIO, as the kernel would report it.
import { mkdtemp, readdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { describe, expect, it, vi } from 'vitest';

vi.mock('node:fs/promises', async (orig) => {
  const real = await orig<typeof import('node:fs/promises')>();
  return {
    ...real,
    open: async (...args: Parameters<typeof real.open>) => {
      const fh = await real.open(...args);
      if (!String(args[0]).includes('.upload-')) return fh;
      let failed = false;
      return new Proxy(fh, {
        get(t, k) {
          if (k === 'datasync') return async () => { if (!failed) { failed = true; throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }); } return t.datasync(); };
          const v = Reflect.get(t, k, t) as unknown;
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
        },
      });
    },
  };
});

const { Uploads } = await import('../../src/service/uploads.js');

describe('an upload whose datasync fails', () => {
  it('is refused with the error, and leaves nothing in queue/', async () => {
    const q = await mkdtemp(path.join(os.tmpdir(), 'jr-upload-eio-'));
    const u = new Uploads(q);
    const chunk = Buffer.alloc(1 << 20, 7);
    chunk.writeUInt16LE(0xef53, 1080); // ext magic
    const body = Readable.from((function* () { for (let i = 0; i < 48; i++) yield i === 0 ? chunk : Buffer.alloc(1 << 20, 1); })());
    await expect(u.receive(body, { name: 'n', owner: 'o', limits: { cap: 1 << 30, reserve: 0 }, declared: 48 << 20, complete: () => true }))
      .rejects.toThrow(/could not be written to the queue's disk: EIO/);
    expect((await readdir(q)).filter((f) => f !== '.uploads')).toEqual([]);
    expect(await readdir(path.join(q, '.uploads'))).toEqual([]);
  });
});
