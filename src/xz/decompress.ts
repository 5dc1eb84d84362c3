// Decompression and verification of .xz files that may be hostile (job intake) or our own (publish).
// The decoder is the system xz, multi-threaded (-T0) and memory-capped; its output streams through
// us so the size cap is enforced exactly (we stop reading and kill xz the moment it is passed) and
// all-zero pages become holes. Chosen by measurement over lzma-native and xz-decompress (WASM).
import { open, rm } from 'node:fs/promises';
import { JrError, isJrError, messageOf } from '../errors.js';
import { killXz, startXz, waitXz, type XzProcess } from './xzproc.js';
import { SparseWriter } from './sparse.js';
import { listXz } from './list.js';

export interface DecompressOptions { sizeCap: number; memLimit?: number; signal?: AbortSignal }

/** Default decoder memory limit: xz -9 needs 65 MiB; this leaves room for 2-4 threads on 24 MiB blocks. */
export const DEFAULT_MEM_LIMIT = 256 * 1024 * 1024;

function checkCount(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new JrError('JR_E_XZ', `Expected \`${name}\` to be a non-negative integer, got ${String(v)}`);
  }
  return v;
}

/** xz arguments to decode or test `src` (a path, or - for stdin) within `memLimit`. */
export function xzDecodeArgs(src: string, memLimit: number, mode: '-dc' | '-t'): string[] {
  // --format=xz: refuse .lzma/raw input; the memlimits make xz fail (hard) or drop to fewer
  // threads (mt) instead of allocating what a hostile header asks for.
  return [mode, '--format=xz', '-T0', `--memlimit-decompress=${memLimit}`,
    `--memlimit-mt-decompress=${memLimit}`, '--', src];
}

/** Decode src with xz, handing each output chunk to `sink`; never passes more than sizeCap bytes. */
async function decodeTo(src: string, o: { sizeCap: number; memLimit: number; signal?: AbortSignal },
  sink: (b: Buffer) => Promise<void> | void): Promise<number> {
  if (o.signal?.aborted) throw new JrError('JR_E_XZ', `${src}: aborted`, { cause: o.signal.reason });
  // The index is read first: an honest header announcing too much fails before any work is done.
  const declared = await listXz(src);
  if (declared.uncompressedBytes > o.sizeCap) {
    throw new JrError('JR_E_XZ', `${src}: declares ${declared.uncompressedBytes} uncompressed bytes, over the size cap of ${o.sizeCap}`);
  }
  const p: XzProcess = startXz(xzDecodeArgs(src, o.memLimit, '-dc'));
  const onAbort = (): void => { p.child.kill('SIGKILL'); };
  o.signal?.addEventListener('abort', onAbort, { once: true });
  let n = 0;
  try {
    for await (const chunk of p.child.stdout as AsyncIterable<Buffer>) {
      n += chunk.length;
      // A lying index or a decompression bomb is caught here, by counting what really comes out.
      if (n > o.sizeCap) {
        throw new JrError('JR_E_XZ', `${src}: decompresses past the size cap of ${o.sizeCap} bytes`);
      }
      await sink(chunk);
    }
    if (o.signal?.aborted) throw new JrError('JR_E_XZ', `${src}: aborted`, { cause: o.signal.reason });
    await waitXz(p, `${src}: corrupt or truncated .xz`, src);
    return n;
  } catch (e) {
    await killXz(p);
    if (o.signal?.aborted && !isJrError(e)) throw new JrError('JR_E_XZ', `${src}: aborted`, { cause: o.signal.reason });
    throw e;
  } finally {
    o.signal?.removeEventListener('abort', onAbort);
  }
}

/** Decompress src (.xz) to dst, sparse; throws JrError('JR_E_XZ') if corrupt/truncated/over cap, removing dst. */
export async function decompressFile(src: string, dst: string, opts: DecompressOptions): Promise<{ bytesOut: number; durationMs: number }> {
  const started = performance.now();
  const sizeCap = checkCount('sizeCap', opts?.sizeCap);
  const memLimit = checkCount('memLimit', opts.memLimit ?? DEFAULT_MEM_LIMIT);
  let fh;
  try {
    fh = await open(dst, 'w');
  } catch (e) {
    throw new JrError('JR_E_XZ', `cannot create ${dst}: ${messageOf(e)}`, { cause: e });
  }
  try {
    const w = new SparseWriter(fh);
    await decodeTo(src, { sizeCap, memLimit, signal: opts.signal }, (b) => w.write(b));
    const bytesOut = await w.finish();
    await fh.close();
    return { bytesOut, durationMs: performance.now() - started };
  } catch (e) {
    await fh.close().catch(() => {});
    // No partial output survives a failure: the caller must never mistake it for a result.
    await rm(dst, { force: true });
    if (isJrError(e, 'JR_E_XZ')) throw e;
    throw new JrError('JR_E_XZ', `decompressing ${src} to ${dst} failed: ${messageOf(e)}`, { cause: e });
  }
}
