// Raw LZMA2 data for one block, three ways: compressed by a system `xz --format=raw` child (the
// fastest encoder here, measured), stored as LZMA2 uncompressed chunks (what xz itself emits for
// incompressible data, without spending seconds finding that out), or built for zero runs from
// cached pieces. Every piece starts with a dictionary reset, so pieces may be concatenated freely.
import { killXz, startXz, waitXz, type XzProcess } from './xzproc.js';
import { JrError } from './../errors.js';

/** Largest LZMA2 uncompressed chunk payload, and largest uncompressed size of one LZMA2 chunk. */
const STORED_CHUNK = 65536;
const CHUNK_MAX = 2 * 1024 * 1024;

/** Dictionary size of xz presets 0-9 (xz(1) table), for the block header and encoder memory. */
export const PRESET_DICT = [256, 1024, 2048, 4096, 4096, 8192, 8192, 16384, 32768, 65536].map((k) => k * 1024);

export interface Lzma2Chunk { control: number; offset: number; size: number; uncompressed: number }

/** Walk the chunk headers of a raw LZMA2 stream; throws if it is malformed or lacks its end marker. */
export function lzma2Chunks(data: Uint8Array): Lzma2Chunk[] {
  const out: Lzma2Chunk[] = [];
  let i = 0;
  for (;;) {
    if (i >= data.length) throw new JrError('JR_E_INTERNAL', 'LZMA2 data has no end marker');
    const c = data[i]!;
    if (c === 0x00) {
      if (i !== data.length - 1) throw new JrError('JR_E_INTERNAL', 'LZMA2 data continues past its end marker');
      return out;
    }
    if (c === 0x01 || c === 0x02) {
      const n = ((data[i + 1]! << 8) | data[i + 2]!) + 1;
      out.push({ control: c, offset: i, size: 3 + n, uncompressed: n });
      i += 3 + n;
    } else if (c >= 0x80) {
      const u = (c & 0x1f) * 65536 + ((data[i + 1]! << 8) | data[i + 2]!) + 1;
      const n = ((data[i + 3]! << 8) | data[i + 4]!) + 1;
      const hdr = c >= 0xc0 ? 6 : 5;
      out.push({ control: c, offset: i, size: hdr + n, uncompressed: u });
      i += hdr + n;
    } else {
      throw new JrError('JR_E_INTERNAL', `LZMA2 control byte 0x${c.toString(16)} is invalid`);
    }
  }
}

/** `data` as LZMA2 uncompressed chunks (3 bytes of overhead per 64 KiB) with end marker, as a
 *  list of buffers that reference `data` instead of copying it (a stored block is mostly data). */
export function storedLzma2(data: Buffer): Buffer[] {
  const n = Math.ceil(data.length / STORED_CHUNK);
  const heads = Buffer.allocUnsafe(3 * n + 1);
  const out: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const s = i * STORED_CHUNK;
    const len = Math.min(STORED_CHUNK, data.length - s);
    heads[3 * i] = i === 0 ? 0x01 : 0x02; // the first chunk resets the dictionary
    heads.writeUInt16BE(len - 1, 3 * i + 1);
    out.push(heads.subarray(3 * i, 3 * i + 3), data.subarray(s, s + len));
  }
  heads[3 * n] = 0x00;
  out.push(heads.subarray(3 * n));
  return out;
}

/** Compress `data` to raw LZMA2 (with end marker) in a `xz --format=raw` child, listed in `live` while it runs. */
export async function xzLzma2(data: Uint8Array, preset: number, dictSize: number, live?: Set<XzProcess>): Promise<Buffer> {
  const p = startXz(['--format=raw', `--lzma2=preset=${preset},dict=${dictSize}`, '-T1', '-c', '-q'], 'pipe');
  live?.add(p);
  try {
    const chunks: Buffer[] = [];
    p.child.stdout!.on('data', (b: Buffer) => chunks.push(b));
    p.child.stdin!.end(data);
    await waitXz(p, 'xz --format=raw (compressing a block) failed');
    return Buffer.concat(chunks);
  } catch (e) {
    await killXz(p);
    throw e;
  } finally {
    live?.delete(p);
  }
}

// LZMA2 of 2^k zero bytes, end marker stripped; encoded once per process with the smallest
// dictionary (zeros only ever match at distance 1) so our zero blocks cost decoders no memory.
const zeroPieces = new Map<number, Promise<Buffer>>();
/** Dictionary size that zero blocks declare. */
export const ZERO_DICT = 4096;

function zeroPiece(size: number): Promise<Buffer> {
  let p = zeroPieces.get(size);
  if (!p) {
    p = xzLzma2(Buffer.alloc(size), 6, ZERO_DICT).then((raw) => {
      const chunks = lzma2Chunks(raw);
      const first = chunks[0]?.control ?? 0;
      if (!(first === 0x01 || first >= 0xe0)) throw new JrError('JR_E_INTERNAL', 'zero piece does not reset the dictionary');
      return raw.subarray(0, raw.length - 1);
    });
    p.catch(() => zeroPieces.delete(size));
    zeroPieces.set(size, p);
  }
  return p;
}

/** Raw LZMA2 (with end marker) that decodes to `n` zero bytes, built from cached 2^k pieces. */
export async function zeroLzma2(n: number): Promise<Buffer> {
  const parts: Promise<Buffer>[] = [];
  const full = Math.floor(n / CHUNK_MAX);
  for (let i = 0; i < full; i++) parts.push(zeroPiece(CHUNK_MAX));
  for (let bit = CHUNK_MAX / 2, rest = n % CHUNK_MAX; bit >= 1; bit /= 2) {
    if (rest >= bit) { parts.push(zeroPiece(bit)); rest -= bit; }
  }
  return Buffer.concat([...(await Promise.all(parts)), Buffer.from([0x00])]);
}
