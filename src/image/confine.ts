// The one confined runner for host-side readers of untrusted images (debugfs today). A job is root
// on its own disk and can write any bytes to it; libext2fs has had memory-corruption bugs reachable
// from crafted filesystems (CVE-2022-1304). So the parser never runs as us:
//   setpriv   -> the unprivileged jobrunner-qemu user when we are root (else the caller), no
//                capabilities (inheritable and bounding sets cleared), no_new_privs;
//   prlimit   -> CPU seconds, address space, file size, open files, no core dumps;
//   bwrap     -> new user, pid, net (no network), ipc, uts, cgroup and mount namespaces; a read-only
//                /usr, a small tmpfs /tmp, and the image read-only at /image: nothing else of ours;
//   and here  -> a wall-clock timeout that SIGKILLs it, stdout and stderr capped (killed past a cap).
// The sandbox writes nothing we keep: callers parse its stdout and copy bytes out of the image
// themselves (src/image/extract-tree.ts), bounded by their own caps.
import { chmod, chown, mkdtemp, realpath, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { JrError } from '../errors.js';
import { run, spawn, which } from '../proc.js';

/** Where the image appears inside the sandbox. */
export const SANDBOX_IMAGE = '/image';
/** The unprivileged user confined readers run as when we are root (created by scripts/setup). */
export const CONFINE_USER = 'jobrunner-qemu';

export interface ConfineLimits {
  /** Wall-clock limit; the sandbox is SIGKILLed past it. */
  timeoutMs: number;
  /** RLIMIT_CPU, seconds. */
  cpuSeconds: number;
  /** RLIMIT_AS, bytes. */
  memoryBytes: number;
  /** stdout past this many bytes kills the sandbox and fails the run. */
  maxStdout: number;
  maxStderr: number;
}

export const DEFAULT_LIMITS: ConfineLimits = {
  timeoutMs: 120_000, cpuSeconds: 60, memoryBytes: 1024 * 1024 * 1024, maxStdout: 64 * 1024 * 1024, maxStderr: 1024 * 1024,
};

export interface ConfinedResult { stdout: Buffer; stderr: string; exitCode: number | null }

interface Identity { uid: number; gid: number }

let identityCache: Promise<Identity | null> | undefined;

/** The identity confined readers take: jobrunner-qemu when we are root, null (stay as we are) otherwise. */
export function sandboxIdentity(): Promise<Identity | null> {
  return (identityCache ??= (async () => {
    if (process.getuid?.() !== 0) return null;
    const u = await run('id', ['-u', '--', CONFINE_USER], { reject: false });
    const g = await run('id', ['-g', '--', CONFINE_USER], { reject: false });
    if (u.exitCode !== 0 || g.exitCode !== 0) {
      throw new JrError('JR_E_CONFIG', `reading a job image needs the unprivileged user ${CONFINE_USER} (run scripts/setup, or: useradd --system --no-create-home --shell /usr/sbin/nologin ${CONFINE_USER}); refusing to parse it as root`);
    }
    return { uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()) };
  })());
}

/** Let the sandbox user read files in `dir` (a temp dir of ours): group-owned by it, mode 0750. */
export async function shareDirWithSandbox(dir: string): Promise<void> {
  const id = await sandboxIdentity();
  if (!id) return;
  await chown(dir, 0, id.gid);
  await chmod(dir, 0o750);
}

/** Let the sandbox user read one file of ours (in a dir passed to shareDirWithSandbox). */
export async function shareFileWithSandbox(file: string): Promise<void> {
  const id = await sandboxIdentity();
  if (!id) return;
  await chown(file, 0, id.gid);
  await chmod(file, 0o640);
}

async function tool(name: string): Promise<string> {
  const found = await which(name) ?? await run('sh', ['-c', 'PATH=/usr/sbin:/sbin command -v "$1"', 'sh', name], { reject: false })
    .then((r) => (r.exitCode === 0 ? r.stdout.trim() : null));
  if (!found) throw new JrError('JR_E_CONFIG', `${name} not found: run scripts/setup (it installs e2fsprogs, bubblewrap and util-linux)`);
  return realpath(found);
}

/** How openConfined binds the image: read-only unless `writable` (only for our own copy of a job disk). */
export interface ConfineOpen { writable?: boolean }

/** One image opened for confined reading; `run` may be called many times; `close` when done. */
export interface ConfinedImage {
  /** The image as the sandbox sees it: pass this path to the tool. */
  readonly path: string;
  run(toolName: string, args: readonly string[], opts?: { stdin?: string; limits?: Partial<ConfineLimits> }): Promise<ConfinedResult>;
  /** Start a long-lived confined tool fed requests on stdin (see ConfinedSession). */
  session(toolName: string, args: readonly string[], limits?: Partial<ConfineLimits>): Promise<ConfinedSession>;
  close(): Promise<void>;
}

/**
 * A confined tool kept running between requests (one sandbox for many, instead of ~60 ms each).
 * limits.timeoutMs and the output caps apply to each exchange; the rlimits to the whole process.
 */
export interface ConfinedSession {
  /** Write `input`, then collect output until stdout holds `stdoutEnd` and stderr holds `stderrEnd`. */
  exchange(input: string, stdoutEnd: Buffer, stderrEnd: string): Promise<{ stdout: Buffer; stderr: string }>;
  close(): Promise<void>;
}

/**
 * Prepare `image` for confined reads. The sandbox user must be able to read it; when it cannot (a
 * root-only file, or one in a private directory), a sparse private copy readable by it is made in
 * stagingRoot() (costs one read of the data) and removed by close().
 */
export async function openConfined(image: string, opts: ConfineOpen = {}): Promise<ConfinedImage> {
  const id = await sandboxIdentity();
  const [setpriv, prlimit, bwrap] = await Promise.all([tool('setpriv'), tool('prlimit'), tool('bwrap')]);
  const original = path.resolve(image);
  let source = original;
  let staging: string | null = null;
  // writable (issue 11, growing a job disk): the image is bound read-write and the file-size limit
  // is its size; a private copy, when one is needed, is copied back over the image by close().
  const writable = opts.writable === true;
  const fsize = writable ? Math.max(16777216, (await stat(original)).size) : 16777216;
  if (id && !(await (writable ? writableBy : readableBy)(id, source, setpriv))) {
    staging = await mkdtemp(path.join(stagingRoot(), 'jr-confine-'));
    const copy = path.join(staging, 'image');
    try {
      await shareDirWithSandbox(staging);
      // cp --sparse=always skips holes (SEEK_DATA); fs.copyFile would write them out as zeros.
      await run('cp', ['--sparse=always', '--', source, copy]);
      await shareFileWithSandbox(copy);
      if (writable) await chmod(copy, 0o660);
    } catch (e) {
      await rm(staging, { recursive: true, force: true });
      throw new JrError('JR_E_PROCESS', `could not make a copy of ${image} the sandbox can read in ${stagingRoot()}: ${(e as Error).message}`, { cause: e });
    }
    source = copy;
  }
  const prefix = id
    ? [setpriv, `--reuid=${id.uid}`, `--regid=${id.gid}`, '--clear-groups', '--no-new-privs', '--inh-caps=-all', '--bounding-set=-all', '--']
    : [setpriv, '--no-new-privs', '--'];
  const argvFor = async (toolName: string, args: readonly string[], lim: ConfineLimits): Promise<string[]> => {
    const bin = await tool(toolName);
    if (!bin.startsWith('/usr/')) throw new JrError('JR_E_CONFIG', `${toolName} resolves to ${bin}, outside /usr: the sandbox only has /usr`);
    return [...prefix, prlimit, `--cpu=${lim.cpuSeconds}`, `--as=${lim.memoryBytes}`, `--fsize=${fsize}`, '--nofile=64', '--core=0', '--',
      bwrap, '--unshare-all', '--unshare-user', '--disable-userns', '--die-with-parent', '--new-session', '--cap-drop', 'ALL', '--clearenv',
      '--setenv', 'PATH', '/usr/sbin:/usr/bin', '--ro-bind', '/usr', '/usr',
      '--symlink', 'usr/lib', '/lib', '--symlink', 'usr/lib64', '/lib64', '--symlink', 'usr/bin', '/bin', '--symlink', 'usr/sbin', '/sbin',
      '--ro-bind', '/etc/ld.so.cache', '/etc/ld.so.cache', '--dev', '/dev', '--size', '16777216', '--tmpfs', '/tmp',
      // resize2fs asks /etc/mtab whether the image is mounted; the sandbox has none (and it is not).
      ...(writable ? ['--setenv', 'EXT2FS_NO_MTAB_OK', '1'] : []),
      writable ? '--bind' : '--ro-bind', source, SANDBOX_IMAGE, '--chdir', '/', '--', bin, ...args];
  };
  return {
    path: SANDBOX_IMAGE,
    run: async (toolName, args, opts = {}) => {
      const lim = { ...DEFAULT_LIMITS, ...opts.limits };
      return confinedExec(await argvFor(toolName, args, lim), opts.stdin, lim, toolName);
    },
    session: async (toolName, args, limits = {}) => {
      const lim = { ...DEFAULT_LIMITS, ...limits };
      return startSession(await argvFor(toolName, args, lim), lim, toolName);
    },
    close: async () => {
      if (!staging) return;
      try {
        if (writable) await run('cp', ['--sparse=always', '--', source, original]);
      } finally {
        await rm(staging, { recursive: true, force: true });
      }
    },
  };
}

/**
 * Where private copies go: a directory the sandbox user can traverse (so not $TMPDIR, which may be
 * private) on disk (so not /tmp, which may be RAM): JOBRUNNER_CONFINE_TMPDIR, else /var/tmp.
 */
export function stagingRoot(): string {
  return process.env.JOBRUNNER_CONFINE_TMPDIR || '/var/tmp';
}

async function writableBy(id: Identity, file: string, setpriv: string): Promise<boolean> {
  const r = await run(setpriv, [`--reuid=${id.uid}`, `--regid=${id.gid}`, '--clear-groups', '--', 'test', '-w', file], { reject: false });
  return r.exitCode === 0;
}

async function readableBy(id: Identity, file: string, setpriv: string): Promise<boolean> {
  const r = await run(setpriv, [`--reuid=${id.uid}`, `--regid=${id.gid}`, '--clear-groups', '--', 'test', '-r', file], { reject: false });
  return r.exitCode === 0;
}

async function confinedExec(argv: string[], stdin: string | undefined, lim: ConfineLimits, name: string): Promise<ConfinedResult> {
  const { child } = await spawn(argv[0]!, argv.slice(1), { stdin: stdin === undefined ? 'ignore' : 'pipe', cleanEnv: true, env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } });
  const out: Buffer[] = [];
  let outBytes = 0;
  let err = '';
  let why: string | null = null;
  const kill = (reason: string): void => { why ??= reason; child.kill('SIGKILL'); };
  child.stdout!.on('data', (b: Buffer) => {
    outBytes += b.length;
    if (outBytes > lim.maxStdout) kill(`wrote more than ${lim.maxStdout} bytes of output`);
    else out.push(b);
  });
  child.stderr!.on('data', (b: Buffer) => {
    if (err.length + b.length > lim.maxStderr) kill(`wrote more than ${lim.maxStderr} bytes of errors`);
    else err += b.toString('utf8');
  });
  if (stdin !== undefined) {
    child.stdin!.on('error', () => undefined); // a sandbox killed early closes its stdin: not our error
    child.stdin!.end(stdin);
  }
  const timer = setTimeout(() => kill(`ran past its ${Math.round(lim.timeoutMs / 1000)} s limit`), lim.timeoutMs);
  try {
    const r = await child;
    if (why) throw new JrError('JR_E_INPUT', `${name} (confined) was stopped: it ${why}`, { argv, stderrTail: err.slice(-2000) });
    const signal = signalOf(r.signal, r.exitCode);
    if (signal) {
      throw new JrError('JR_E_INPUT', `${name} (confined) was killed by ${signal} (CPU limit ${lim.cpuSeconds} s, or memory ${lim.memoryBytes} bytes?): ${err.trim().slice(-500)}`,
        { argv, signal, stderrTail: err.slice(-2000) });
    }
    if (r.exitCode === undefined || r.exitCode === null || (r.exitCode !== 0 && out.length === 0 && /bwrap|setpriv|prlimit/.test(err))) {
      throw new JrError('JR_E_PROCESS', `the sandbox for ${name} could not start: ${err.trim().slice(-500)}`, { argv, exitCode: r.exitCode ?? null });
    }
    return { stdout: Buffer.concat(out), stderr: err, exitCode: r.exitCode };
  } finally {
    clearTimeout(timer);
  }
}

async function startSession(argv: string[], lim: ConfineLimits, name: string): Promise<ConfinedSession> {
  const { child } = await spawn(argv[0]!, argv.slice(1), { stdin: 'pipe', cleanEnv: true, env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } });
  let out: Buffer[] = [];
  let outBytes = 0;
  let err = '';
  let failure: JrError | null = null;
  let wake: (() => void) | null = null;
  const fail = (msg: string): void => {
    failure ??= new JrError('JR_E_INPUT', `${name} (confined) was stopped: it ${msg}`, { argv, stderrTail: err.slice(-2000) });
    child.kill('SIGKILL');
    wake?.();
  };
  child.stdout!.on('data', (b: Buffer) => {
    outBytes += b.length;
    if (outBytes > lim.maxStdout) fail(`wrote more than ${lim.maxStdout} bytes of output for one request`);
    else { out.push(b); wake?.(); }
  });
  child.stderr!.on('data', (b: Buffer) => {
    if (err.length + b.length > lim.maxStderr) fail(`wrote more than ${lim.maxStderr} bytes of errors`);
    else { err += b.toString('utf8'); wake?.(); }
  });
  child.stdin!.on('error', () => undefined); // a killed sandbox closes its stdin: reported as the exit below
  const exited = child.then((r) => {
    const signal = signalOf(r.signal, r.exitCode);
    if (!failure) fail(signal ? `was killed by ${signal} (CPU limit ${lim.cpuSeconds} s, or memory ${lim.memoryBytes} bytes?)` : `exited (${r.exitCode}) before answering: ${err.trim().slice(-300)}`);
  });
  return {
    exchange: async (input, stdoutEnd, stderrEnd) => {
      if (failure) throw failure;
      out = [];
      outBytes = 0;
      err = '';
      const timer = setTimeout(() => fail(`did not answer within ${Math.round(lim.timeoutMs / 1000)} s`), lim.timeoutMs);
      try {
        child.stdin!.write(input);
        // Look for the marker in the new chunks only (plus a carry across chunk edges): linear in output.
        let seen = 0;
        let carry = Buffer.alloc(0);
        let found = false;
        for (;;) {
          if (failure) throw failure;
          for (; !found && seen < out.length; seen++) {
            const win = Buffer.concat([carry, out[seen]!]);
            found = win.includes(stdoutEnd);
            carry = win.subarray(Math.max(0, win.length - stdoutEnd.length + 1));
          }
          if (found && err.includes(stderrEnd)) {
            const joined = Buffer.concat(out);
            return { stdout: joined.subarray(0, joined.indexOf(stdoutEnd)), stderr: err.slice(0, err.indexOf(stderrEnd)) };
          }
          await new Promise<void>((resolve) => { wake = resolve; });
          wake = null;
        }
      } finally {
        clearTimeout(timer);
      }
    },
    close: async () => {
      child.stdin!.end();
      const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited.catch(() => undefined);
      clearTimeout(t);
    },
  };
}

/** bwrap reports a sandboxed child killed by signal N as exit status 128+N. */
function signalOf(signal: string | undefined, exitCode: number | undefined): string | null {
  if (signal) return signal;
  if (exitCode === undefined || exitCode <= 128 || exitCode > 128 + 64) return null;
  const name = Object.entries(os.constants.signals).find(([, n]) => n === exitCode - 128)?.[0];
  return name ?? `signal ${exitCode - 128}`;
}
