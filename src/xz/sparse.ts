// Zero detection and a sparse sequential writer. Job images are mostly empty space: writing their
// zeros would cost disk and time, so all-zero pages become holes and the size is set at the end.
import type { FileHandle } from 'node:fs/promises';

/** Granularity of holes we create: the page / ext4 block size, so holes line up with fs blocks. */
export const PAGE = 4096;

const ZEROS = Buffer.alloc(1 << 20);

/** True when buf[start, end) is all zero bytes (native memcmp in 1 MiB steps). */
export function isZero(buf: Uint8Array, start = 0, end = buf.length): boolean {
  for (let s = start; s < end; s += ZEROS.length) {
    const e = Math.min(end, s + ZEROS.length);
    if (!Buffer.from(buf.buffer, buf.byteOffset + s, e - s).equals(ZEROS.subarray(0, e - s))) return false;
  }
  return true;
}

/** Appends bytes to a fresh (empty) file, leaving all-zero aligned pages unwritten. */
export class SparseWriter {
  private pos = 0;
  private dataBytes = 0;
  constructor(private readonly fh: FileHandle) {}

  /** Bytes appended so far (the file's logical size once finish() has run). */
  get size(): number { return this.pos; }
  /** Bytes actually written to disk so far (the non-zero pages). */
  get written(): number { return this.dataBytes; }

  /** Append `buf`; only pages holding a non-zero byte are written, at their final offset. */
  async write(buf: Uint8Array): Promise<void> {
    const base = this.pos;
    this.pos += buf.length;
    if (isZero(buf)) return;
    let runStart = -1;
    let s = 0;
    while (s < buf.length) {
      // Page boundaries are absolute file offsets, so holes stay block-aligned across chunks.
      const e = Math.min(buf.length, s + PAGE - ((base + s) % PAGE));
      const zero = isZero(buf, s, e);
      if (!zero && runStart < 0) runStart = s;
      if (zero && runStart >= 0) { await this.flush(buf, runStart, s, base); runStart = -1; }
      s = e;
    }
    if (runStart >= 0) await this.flush(buf, runStart, buf.length, base);
  }

  private async flush(buf: Uint8Array, s: number, e: number, base: number): Promise<void> {
    let off = s;
    while (off < e) {
      const { bytesWritten } = await this.fh.write(buf, off, e - off, base + off);
      if (bytesWritten <= 0) throw new Error(`short write at offset ${base + off}`);
      off += bytesWritten;
    }
    this.dataBytes += e - s;
  }

  /** Set the file size to what was appended (a trailing hole needs this); returns that size. */
  async finish(): Promise<number> {
    await this.fh.truncate(this.pos);
    return this.pos;
  }
}
