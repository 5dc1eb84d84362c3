// The one process adapter: every external program is started through here (execa is imported
// nowhere else). Argument vectors only, never a shell string.
// execa is loaded on first use: it costs ~100 ms to import, and a process that only compresses
// (jobrunner compress) starts its children through spawnLean below and never needs it.
import { spawn as startChild } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import type { ResultPromise, Options } from 'execa';
import { JrError, type ErrorCode } from './errors.js';

let execaModule: Promise<typeof import('execa')> | undefined;
const loadExeca = (): Promise<typeof import('execa')> => (execaModule ??= import('execa'));

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export interface RunOptions {
  cwd?: string;
  env?: Record<string, string | undefined>;
  /** Replace the environment instead of extending it. */
  cleanEnv?: boolean;
  input?: string | Buffer;
  timeoutMs?: number;
  /** Error code used when the program fails (default JR_E_PROCESS). */
  errorCode?: ErrorCode;
  /** Do not throw on a non-zero exit; return it. */
  reject?: boolean;
  /** Let the child inherit our stdio (for interactive programs such as a chroot shell). */
  inherit?: boolean;
  maxBuffer?: number;
  /** Open file descriptors handed to the program as its fds 3, 4, … in order (not with inherit). */
  extraFds?: number[];
}

/** The last `n` characters of s, for error messages. */
export function tail(s: string, n = 2000): string {
  return s.length <= n ? s : '…' + s.slice(s.length - n);
}

/** Run a program to completion and collect its output; throws JrError on failure unless reject:false. */
export async function run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const started = Date.now();
  const o: Options = {
    cwd: opts.cwd,
    env: opts.env,
    extendEnv: !opts.cleanEnv,
    input: opts.input,
    timeout: opts.timeoutMs,
    reject: false,
    stripFinalNewline: false,
    maxBuffer: opts.maxBuffer ?? 64 * 1024 * 1024,
    // execa's types list only fds 3-9 as numbers; any open fd works at run time (node passes it on).
    ...(opts.inherit ? { stdio: 'inherit' as const } : opts.extraFds?.length ? { stdio: ['pipe', 'pipe', 'pipe', ...opts.extraFds] as Options['stdio'] } : {}),
  };
  const { execa } = await loadExeca();
  const r = await execa(file, args, o);
  const stdout = typeof r.stdout === 'string' ? r.stdout : '';
  const stderr = typeof r.stderr === 'string' ? r.stderr : '';
  const exitCode = typeof r.exitCode === 'number' ? r.exitCode : -1;
  const failed = r.failed || exitCode !== 0;
  if (failed && opts.reject !== false) {
    const why = r.timedOut ? `timed out after ${opts.timeoutMs} ms`
      : r.signal ? `was killed by ${r.signal}`
      : exitCode === -1 ? `could not be started (${r.code ?? r.shortMessage})`
      : `exited with ${exitCode}`;
    const detail = tail(stderr.trim() || stdout.trim(), 600);
    throw new JrError(opts.errorCode ?? 'JR_E_PROCESS', `${file} ${why}${detail ? `: ${detail}` : ''}`, {
      argv: [file, ...args], exitCode: r.exitCode ?? null, signal: r.signal ?? null,
      timedOut: r.timedOut, durationMs: Date.now() - started, stderrTail: tail(stderr), cause: r.cause,
    });
  }
  return { stdout, stderr, exitCode };
}

export interface SpawnOptions {
  cwd?: string;
  env?: Record<string, string | undefined>;
  cleanEnv?: boolean;
  /** stdin: 'ignore' (default) or 'pipe'. */
  stdin?: 'ignore' | 'pipe';
  /** stderr: 'pipe' (default) merges nothing; 'stdout' sends it into the stdout pipe. */
  stderr?: 'pipe' | 'stdout' | 'ignore';
  /** Put the child in its own process group (so a group kill reaches its children). */
  detached?: boolean;
  /** Open file descriptors handed to the child as its fds 3, 4, … in order. */
  extraFds?: number[];
  /** Pipes appended after extraFds (child.stdio[3 + extraFds.length + i]): control channels such as bwrap's --info-fd. */
  extraPipes?: number;
}

/** A long-running child with streaming stdout; the caller owns waiting and killing. */
export type Child = ResultPromise;

/** Start a long-running program with piped stdout (not buffered in memory). Wrapped in an object
 *  because the child is itself a promise (of its result), which an async function would await. */
export async function spawn(file: string, args: readonly string[], opts: SpawnOptions = {}): Promise<{ child: Child }> {
  const { execa } = await loadExeca();
  return { child: execa(file, args, {
    cwd: opts.cwd,
    env: opts.env,
    extendEnv: !opts.cleanEnv,
    // execa's types list only fds 3-9 as numbers; any open fd works at run time (node passes it on).
    stdio: [opts.stdin ?? 'ignore', 'pipe', opts.stderr === 'stdout' ? 'pipe' : (opts.stderr ?? 'pipe'), ...(opts.extraFds ?? []), ...Array<'pipe'>(opts.extraPipes ?? 0).fill('pipe')] as Options['stdio'],
    all: opts.stderr === 'stdout',
    buffer: false,
    reject: false,
    detached: opts.detached ?? false,
    cleanup: true,
  }) };
}

/** How a lean child ended; `error` is set when it could not be started (ENOENT, EACCES, ...). */
export interface LeanExit { exitCode: number | null; signal: NodeJS.Signals | null; error: Error | null }

/** A child started by spawnLean: its pipes, how it ended, and a way to signal it. */
export interface LeanChild {
  readonly stdin: Writable | null;
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** Settles, never rejects, once the child has exited and its pipes have closed. */
  readonly done: Promise<LeanExit>;
  kill(signal?: NodeJS.Signals): void;
}

/**
 * Start a short-lived helper with stdout and stderr piped, through node:child_process itself.
 * For the hot path that starts one child per compressed block. Measured here (40 starts of
 * `xz --version`): execa costs 3.1 ms of our CPU per child, node:child_process 1.5 ms, and
 * importing execa costs ~100 ms. No shell, the environment as is, no exit hooks: the caller
 * kills what it started (an xz child also ends on its own when our end of a pipe closes).
 */
export function spawnLean(file: string, args: readonly string[], opts: { stdin?: 'ignore' | 'pipe' | number } = {}): LeanChild {
  const cp = startChild(file, args, { stdio: [opts.stdin ?? 'ignore', 'pipe', 'pipe'] });
  const done = new Promise<LeanExit>((resolve) => {
    let error: Error | null = null;
    // `on`, not `once`: a later 'error' (a kill that fails) must not become an uncaught exception.
    cp.on('error', (e) => {
      error ??= e;
      // A child that never started gets no 'close' for sure: settle here.
      if (cp.pid === undefined) resolve({ exitCode: null, signal: null, error });
    });
    cp.once('close', (exitCode, signal) => resolve({ exitCode, signal, error }));
  });
  // Out of file descriptors (EMFILE/ENFILE), node gives up before creating the pipes.
  if (!cp.stdout || !cp.stderr) {
    throw new JrError('JR_E_PROCESS', `could not start ${file}: no pipes for it (out of file descriptors?)`, { argv: [file, ...args] });
  }
  return { stdin: cp.stdin, stdout: cp.stdout, stderr: cp.stderr, done, kill: (sig = 'SIGTERM') => { cp.kill(sig); } };
}

/** True when an executable named `name` is on PATH. */
export async function which(name: string): Promise<string | null> {
  const r = await run('sh', ['-c', 'command -v "$1"', 'sh', name], { reject: false });
  return r.exitCode === 0 ? r.stdout.trim() : null;
}
