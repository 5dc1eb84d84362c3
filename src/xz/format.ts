// The .xz container (XZ file format 1.1.0): stream header, block headers, index, stream footer.
// Pure byte builders; every block we write carries its compressed and uncompressed sizes in its
// header so xz >= 5.4 can decode our files multi-threaded. Check type is CRC32 (a standard check;
// zlib's native crc32 makes it free, and CRC64 would cost JS time on every byte).
import { crc32 } from 'node:zlib';

const MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);
const FOOTER_MAGIC = Buffer.from([0x59, 0x5a]);
/** Check ID 0x01 = CRC32 (4 bytes after each block). */
export const CHECK_CRC32 = 0x01;
export const CHECK_SIZE = 4;
const LZMA2_FILTER_ID = 0x21;

/** Encode a multibyte integer (7 bits per byte, little-endian, high bit = more); max 2^63-1. */
export function vli(n: number): Buffer {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`vli: bad value ${n}`);
  const out: number[] = [];
  let v = n;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return Buffer.from(out);
}

function u32le(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
}

const pad4 = (n: number): number => (4 - (n % 4)) % 4;

/** The 12-byte stream header: magic, flags (CRC32), CRC32 of the flags. */
export function streamHeader(): Buffer {
  const flags = Buffer.from([0x00, CHECK_CRC32]);
  return Buffer.concat([MAGIC, flags, u32le(crc32(flags))]);
}

/** LZMA2 dictionary-size property byte for `dictSize` (rounded up to 2^n or 3*2^(n-1), >= 4 KiB). */
export function lzma2DictProp(dictSize: number): number {
  for (let p = 0; p < 40; p++) {
    const size = (2 | (p & 1)) * 2 ** (Math.floor(p / 2) + 11);
    if (size >= dictSize) return p;
  }
  return 40; // 4 GiB - 1
}

/** The dictionary size that property byte `p` stands for. */
export function lzma2DictSize(p: number): number {
  return p >= 40 ? 0xffffffff : (2 | (p & 1)) * 2 ** (Math.floor(p / 2) + 11);
}

/** A block header for one LZMA2 filter, with both sizes present (so decoders can bound and thread). */
export function blockHeader(compressedSize: number, uncompressedSize: number, dictProp: number): Buffer {
  const body = Buffer.concat([
    Buffer.from([0xc0]), // flags: 1 filter, compressed + uncompressed size present
    vli(compressedSize), vli(uncompressedSize),
    Buffer.from([LZMA2_FILTER_ID, 0x01, dictProp]), // filter id, props size, props
  ]);
  const size = 1 + body.length + 4;
  const total = size + pad4(size);
  const head = Buffer.concat([Buffer.from([total / 4 - 1]), body, Buffer.alloc(pad4(size))]);
  return Buffer.concat([head, u32le(crc32(head))]);
}

/** One index record: what a block occupies (header + data + check, no padding) and decodes to. */
export interface IndexRecord { unpaddedSize: number; uncompressedSize: number }

/** A complete block as a list of buffers (no copying of the data): header, LZMA2 data, padding
 *  to 4, CRC32 of the uncompressed data. `lzma2` is the raw LZMA2 stream, possibly in pieces. */
export function blockParts(lzma2: readonly Buffer[], uncompressedSize: number, crc: number, dictProp: number): { parts: Buffer[]; size: number; record: IndexRecord } {
  const dataLen = lzma2.reduce((n, b) => n + b.length, 0);
  const header = blockHeader(dataLen, uncompressedSize, dictProp);
  const parts = [header, ...lzma2, Buffer.alloc(pad4(dataLen)), u32le(crc)];
  return {
    parts, size: header.length + dataLen + pad4(dataLen) + CHECK_SIZE,
    record: { unpaddedSize: header.length + dataLen + CHECK_SIZE, uncompressedSize },
  };
}

/** The index (indicator, record count, records, padding, CRC32) followed by the stream footer. */
export function indexAndFooter(records: readonly IndexRecord[]): Buffer {
  const parts: Buffer[] = [Buffer.from([0x00]), vli(records.length)];
  for (const r of records) parts.push(vli(r.unpaddedSize), vli(r.uncompressedSize));
  let index = Buffer.concat(parts);
  index = Buffer.concat([index, Buffer.alloc(pad4(index.length))]);
  index = Buffer.concat([index, u32le(crc32(index))]);
  const tail = Buffer.concat([u32le(index.length / 4 - 1), Buffer.from([0x00, CHECK_CRC32])]);
  return Buffer.concat([index, u32le(crc32(tail)), tail, FOOTER_MAGIC]);
}
