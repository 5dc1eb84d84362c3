// Downloading an image file (http(s), file:// or a plain path) into a sparse local file while hashing
// it, so a multi-GB mostly-empty root.img costs only its data in the cache, and is verified as read.
import { createReadStream } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { JrError } from '../errors.js';
import type { FileDigest } from '../image/meta.js';

const BLOCK = 64 * 1024;
const ZERO = Buffer.alloc(BLOCK);

/** Resolve `rel` against a location (URL or path); plain paths stay paths. */
export function joinLocation(base: string, rel: string): string {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(base)) return new URL(rel, base.endsWith('/') || base.endsWith('.json') ? base : base + '/').href;
  return base.endsWith('.json') ? `${base.slice(0, base.lastIndexOf('/') + 1)}${rel}` : `${base.replace(/\/$/, '')}/${rel}`;
}

async function openSource(loc: string): Promise<AsyncIterable<Uint8Array>> {
  if (/^https?:\/\//i.test(loc)) {
    const r = await fetch(loc);
    if (!r.ok || !r.body) throw new JrError('JR_E_BASE_IMAGE', `GET ${loc}: HTTP ${r.status}`);
    return Readable.fromWeb(r.body as import('node:stream/web').ReadableStream<Uint8Array>);
  }
  const file = loc.startsWith('file://') ? fileURLToPath(loc) : loc;
  return createReadStream(file, { highWaterMark: 1 << 20 });
}

/** Read a small text resource (an index or an image.json). */
export async function readText(loc: string): Promise<string> {
  if (/^https?:\/\//i.test(loc)) {
    const r = await fetch(loc);
    if (!r.ok) throw new JrError('JR_E_BASE_IMAGE', `GET ${loc}: HTTP ${r.status}`);
    return r.text();
  }
  return readFile(loc.startsWith('file://') ? fileURLToPath(loc) : loc, 'utf8');
}

/** Copy `loc` to `dest` (created, must not exist), skipping all-zero 64 KiB blocks (holes), and
 *  check it against `want` when given. Returns the digest of what was read. */
export async function download(loc: string, dest: string, want?: FileDigest): Promise<FileDigest> {
  const h = createHash('sha256');
  const fh = await open(dest, 'wx', 0o644);
  let pos = 0;
  let pending: Buffer = Buffer.alloc(0);
  const flush = async (buf: Buffer) => {
    for (let off = 0; off < buf.length; off += BLOCK) {
      const b = buf.subarray(off, Math.min(off + BLOCK, buf.length));
      if (!b.equals(ZERO.subarray(0, b.length))) await fh.write(b, 0, b.length, pos);
      pos += b.length;
    }
  };
  try {
    for await (const chunk of await openSource(loc)) {
      const c = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      h.update(c);
      pending = pending.length ? Buffer.concat([pending, c]) : c;
      const whole = pending.length - (pending.length % BLOCK);
      if (whole > 0) { await flush(pending.subarray(0, whole)); pending = Buffer.from(pending.subarray(whole)); }
    }
    await flush(pending);
    await fh.truncate(pos);
    await fh.sync();
  } finally {
    await fh.close();
  }
  const got = { bytes: pos, sha256: h.digest('hex') };
  if (want && (got.sha256 !== want.sha256 || got.bytes !== want.bytes)) {
    throw new JrError('JR_E_BASE_IMAGE', `Expected ${loc} to have sha256 ${want.sha256} (${want.bytes} bytes), got ${got.sha256} (${got.bytes} bytes)`);
  }
  return got;
}
