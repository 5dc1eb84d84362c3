// The system `xz` (XZ Utils >= 5.4) as a worker: started through the one process adapter, its
// stderr kept for the error message, its failures turned into JR_E_XZ. Measured faster than both
// lzma-native (bundled liblzma 5.2.3) and xz-decompress (WASM); see docs/COMPRESSION.md.
import { spawnLean, type LeanChild } from '../proc.js';
import { JrError, type ErrorContext } from '../errors.js';

/** The xz executable (PATH lookup; argv only, never a shell). */
export const XZ_BIN = 'xz';

/** A running xz child plus the tail of what it printed on stderr. */
export interface XzProcess {
  child: LeanChild;
  argv: string[];
  stderr(): string;
}

/** Start xz with `args`; stdout is a pipe the caller must drain, stderr is collected (last 8 KiB). */
export function startXz(args: string[], stdin: 'ignore' | 'pipe' = 'ignore'): XzProcess {
  // The lean start (no execa): the compressor starts one of these per block.
  const child = spawnLean(XZ_BIN, args, { stdin });
  let err = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (s: string) => {
    err += s;
    if (err.length > 16384) err = err.slice(-8192);
  });
  // The caller learns about failures from the exit status; an EPIPE on stdin after xz died is noise.
  child.stdin?.on('error', () => {});
  return { child, argv: [XZ_BIN, ...args], stderr: () => err };
}

/** xz's own complaint, without the "xz: <file>: " prefixes ("Unexpected end of input"). */
export function xzReason(stderr: string, file?: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter(Boolean).map((l) => {
    let s = l.startsWith('xz: ') ? l.slice(4) : l;
    if (file !== undefined && s.startsWith(`${file}: `)) s = s.slice(file.length + 2);
    return s;
  });
  return lines.join('; ') || 'no message';
}

/** Wait for xz to exit; throws JrError('JR_E_XZ', `${what}: <xz's reason>`) unless it exited 0. */
export async function waitXz(p: XzProcess, what: string, file?: string): Promise<void> {
  const r = await p.child.done;
  if (r.exitCode === 0 && !r.error) return;
  const ctx: ErrorContext = { argv: p.argv, exitCode: r.exitCode, signal: r.signal, stderrTail: p.stderr() };
  const reason = r.exitCode === null && r.signal === null
    ? `could not start ${XZ_BIN} (${r.error?.message ?? 'no exit status'})`
    : r.signal ? `${XZ_BIN} was killed by ${r.signal}` : xzReason(p.stderr(), file);
  throw new JrError('JR_E_XZ', `${what}: ${reason}`, ctx);
}

/** Kill xz (if still running) and wait for it, ignoring how it ended. */
export async function killXz(p: XzProcess): Promise<void> {
  p.child.kill('SIGKILL');
  await p.child.done;
}
