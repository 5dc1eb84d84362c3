// `jobrunner compress IMAGE [-o OUT] [--threads N]`: an image to a standard .xz, published like
// a result (temp name beside OUT, fsync, rename, fsync the directory) so OUT is never half-written.
import { open, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { tempName } from '../fsutil.js';
import { parseArgs } from 'node:util';
import { availableParallelism } from 'node:os';
import { JrError } from '../errors.js';
import { compressFile, DEFAULT_PRESET, type CompressResult } from '../xz/compress.js';
import { formatBytes, formatDuration, parseSize } from '../units.js';

const HELP = `Usage: jobrunner compress IMAGE [-o OUT] [--threads N] [--preset N] [--block-size SIZE] [-f]

Compresses IMAGE to a standard .xz file (one stream, many blocks, CRC32 checks) that stock
\`xz -d\` / \`xz -t\` read. Holes and all-zero ranges cost almost nothing (only the data ranges
are read), incompressible ranges are stored, and the rest is compressed with LZMA2 by
\`xz --format=raw\` children, N at a time. The output is written to a temporary name beside
OUT, synced and renamed, so OUT is either complete or absent. IMAGE is left in place.

Options:
  -o, --output OUT     where to write (default: IMAGE.xz); refused if it exists, unless -f
  -f, --force          overwrite OUT if it exists
  --threads N          parallel compressors (default: ${availableParallelism()}, the CPUs available)
  --preset N           LZMA2 preset 0-9, as xz -0 .. -9 (default ${DEFAULT_PRESET}, as the service's
                       --compress-preset: 4-9x faster than 6 for 11-19% more bytes; 6 is xz's default)
  --block-size SIZE    largest uncompressed size of a compressed block, e.g. 8M
                       (default: chosen from the data size, at most 3x the preset's dictionary)
  -h, --help           this help

Prints one line: sizes, ratio, time. Exit 0 on success; on failure OUT is untouched.
`;

function intArg(name: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < min || n > max) throw new JrError('JR_E_USAGE', `Expected --${name} to be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
  return n;
}

/** One line for humans: "IMAGE: 4.0 GiB -> 37 MiB (0.9%, 111x) in 9.1s [...] -> OUT". */
export function summary(image: string, out: string, r: CompressResult): string {
  const pct = r.bytesIn === 0 ? 0 : (100 * r.bytesOut) / r.bytesIn;
  const x = r.bytesOut === 0 ? 0 : r.bytesIn / r.bytesOut;
  const d = r.detail;
  const how = d ? ` [compressed ${formatBytes(d.bytes.lzma)}, stored ${formatBytes(d.bytes.store)}, holes/zeros ${formatBytes(d.bytes.zero)}]` : '';
  return `${image}: ${formatBytes(r.bytesIn)} -> ${formatBytes(r.bytesOut)} (${pct.toFixed(1)}%, ${x.toFixed(1)}x smaller) in ${formatDuration(r.durationMs)}${how} -> ${out}\n`;
}

/** Entry point of `jobrunner compress`; returns the exit code. */
export async function compressMain(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true, strict: true,
    options: {
      output: { type: 'string', short: 'o' }, force: { type: 'boolean', short: 'f' }, threads: { type: 'string' },
      preset: { type: 'string' }, 'block-size': { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) { process.stdout.write(HELP); return 0; }
  if (positionals.length !== 1) throw new JrError('JR_E_USAGE', `Expected exactly one IMAGE, got ${positionals.length} (see --help)`);
  const image = positionals[0]!;
  const out = path.resolve(values.output ?? `${image}.xz`);
  const threads = intArg('threads', values.threads, 1, 1024);
  const preset = intArg('preset', values.preset, 0, 9);
  let blockSize: number | undefined;
  if (values['block-size'] !== undefined) {
    const b = parseSize(values['block-size']);
    if (b === null || b < 4096 || b > 2 ** 30) throw new JrError('JR_E_USAGE', `Expected --block-size to be a size from 4K to 1G, got ${JSON.stringify(values['block-size'])}`);
    blockSize = b;
  }
  const st = await stat(image).catch(() => null);
  if (!st?.isFile()) throw new JrError('JR_E_USAGE', `${image}: no such file (or not a regular file)`);
  if (path.resolve(image) === out) throw new JrError('JR_E_USAGE', 'OUT must differ from IMAGE');
  if (!values.force && await stat(out).then(() => true, () => false)) {
    throw new JrError('JR_E_USAGE', `${out} exists (use -f to overwrite)`);
  }

  const tmp = tempName(path.dirname(out), path.basename(out));
  const ac = new AbortController();
  const onSignal = (): void => ac.abort(new Error('interrupted'));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const r = await compressFile(image, tmp, { threads, preset, blockSize, signal: ac.signal });
    const fh = await open(tmp, 'r');
    try { await fh.sync(); } finally { await fh.close(); }
    await rename(tmp, out);
    const dir = await open(path.dirname(out), 'r');
    try { await dir.sync(); } finally { await dir.close(); }
    process.stdout.write(summary(image, out, r));
    return 0;
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
