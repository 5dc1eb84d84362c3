// CRC32 (the zlib / xz polynomial) of data and of runs of zero bytes. A hole of gigabytes needs its
// check value too; feeding it through zlib would cost ~0.3 s per GiB, so zero runs are done in
// O(log n) with the standard trick: appending a zero byte is a linear map on the CRC register over
// GF(2), so appending n zero bytes is that map raised to the n-th power (by repeated squaring).
import { crc32 as zlibCrc32 } from 'node:zlib';

/** CRC32 of `data`, continuing from `prev` (0 to start). Native zlib. */
export function crc32(data: Uint8Array, prev = 0): number {
  return zlibCrc32(data, prev) >>> 0;
}

type Mat = Uint32Array; // 32 columns: column i = image of register bit i

function apply(m: Mat, v: number): number {
  let out = 0;
  for (let i = 0; v !== 0; i++, v >>>= 1) if (v & 1) out ^= m[i]!;
  return out >>> 0;
}

function square(m: Mat): Mat {
  const r = new Uint32Array(32);
  for (let i = 0; i < 32; i++) r[i] = apply(m, m[i]!);
  return r;
}

// ZERO_POW[k] = the register map for appending 2^k zero bytes.
const ZERO_POW: Mat[] = (() => {
  // One zero *bit* for the reflected polynomial 0xEDB88320: shift right, xor poly if bit 0 was set.
  const bit = new Uint32Array(32);
  bit[0] = 0xedb88320;
  for (let i = 1; i < 32; i++) bit[i] = (1 << (i - 1)) >>> 0;
  let byte = square(square(square(bit))); // 8 bits
  const pows: Mat[] = [];
  for (let k = 0; k < 53; k++) { pows.push(byte); byte = square(byte); }
  return pows;
})();

/** CRC32 of `prev`'s data followed by `n` zero bytes (equals crc32(Buffer.alloc(n), prev)). */
export function crc32Zeros(n: number, prev = 0): number {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`crc32Zeros: bad length ${n}`);
  let reg = ~prev >>> 0; // zlib's pre-conditioning; the register is what the linear map acts on
  for (let k = 0; n > 0; k++, n = Math.floor(n / 2)) if (n % 2 === 1) reg = apply(ZERO_POW[k]!, reg);
  return ~reg >>> 0;
}
