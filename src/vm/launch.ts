// Runs one qemu process to its end: streams the console through a capped log and the marker
// parser, and enforces two watchdogs: boot (no `start` marker in time) and wall clock.
// Killing is TERM, then KILL after a grace period; the reason is recorded in the outcome.
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { JrError } from '../errors.js';
import { spawn, type Child } from '../proc.js';
import { ConsoleLog } from './console.js';
import { MarkerParser, type MarkerEvent } from './markers.js';
import { qemuArgs, type VmSpec } from './qemu-args.js';
import type { RunAs } from '../run-as.js';

export interface LaunchOptions {
  qemuBinary: string;
  spec: VmSpec;
  nonce: string;
  bootTimeoutMs: number;
  timeoutMs: number;
  killGraceMs: number;
  /** Where the console log goes (null: not kept). */
  logPath: string | null;
  logCap: number;
  /** Directory for qemu's temporary files (the root disk's snapshot overlay lands here via TMPDIR). */
  tmpDir: string;
  /** Run qemu as this user/group instead of ours (needs root). */
  runAs?: RunAs;
  onConsole?: (chunk: Buffer) => void;
  onEvent?: (ev: MarkerEvent) => void;
  /** Called once qemu is running, with its pid (the service records it in the lease). */
  onSpawn?: (pid: number) => void;
  /** Aborting kills the VM (TERM, then KILL) and ends with `aborted`. */
  signal?: AbortSignal;
  // Restores (vm/restore.ts) only, additive: the qemu arguments replacing qemuArgs(spec) (the spec
  // still names the disks opened as DISK_FDS), more files opened read-only and handed over as fds
  // 6, 7, …, and a hook given qemu's stdin (piped) once it runs.
  args?: string[];
  moreFiles?: string[];
  onStarted?: (io: { stdin: Writable; pid: number }) => void;
}

export type VmEnd = 'exited' | 'bad-image' | 'boot-failed' | 'timeout' | 'aborted' | 'crashed' | 'killed';

export interface VmOutcome {
  end: VmEnd;
  /** The job's exit status when `end` is 'exited'. */
  exitCode: number | null;
  /** True when construir reported the job disk unmounted and synced. */
  clean: boolean;
  reason: string;
  /** ms from spawn to the `start` marker (null: never started). */
  bootMs: number | null;
  totalMs: number;
  consoleBytes: number;
  consoleTruncated: boolean;
  lastLine: string;
  sawOutput: boolean;
  qemuExitCode: number | null;
  qemuSignal: string | null;
  stderrTail: string;
  argv: string[];
}

/** Signals that only ever come from outside a process (never from its own fault). */
const OUTSIDE_SIGNALS = new Set(['SIGKILL', 'SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2']);

/** The argv actually executed: qemu, wrapped in setpriv so it dies with us and (optionally) drops to runAs. */
export function launchArgv(opts: Pick<LaunchOptions, 'qemuBinary' | 'runAs' | 'args'> & Partial<Pick<LaunchOptions, 'spec'>>): string[] {
  const wrap = ['setpriv', '--pdeathsig', 'KILL'];
  if (opts.runAs) {
    wrap.push(`--reuid=${opts.runAs.uid}`, `--regid=${opts.runAs.gid}`, '--clear-groups', '--inh-caps=-all', '--bounding-set=-all', '--no-new-privs');
  }
  return [...wrap, '--', opts.qemuBinary, ...(opts.args ?? qemuArgs(opts.spec!))];
}

/** Boot the VM described by opts.spec and wait for it to end; never throws for guest behaviour. */
export async function launchVm(opts: LaunchOptions): Promise<VmOutcome> {
  const argv = launchArgv(opts);
  const started = Date.now();
  const log = new ConsoleLog(opts.logPath, opts.logCap);
  const parser = new MarkerParser(opts.nonce);
  let bootMs: number | null = null;
  let exitCode: number | null = null;
  let clean = false;
  let badImage: string | null = null;
  let initramfsFailure: string | null = null;
  let killedFor: { end: VmEnd; reason: string } | null = null;
  let stderr = '';
  let sawOutput = false;

  // The disks are opened here, by us, and inherited by qemu as fds 3-5 (see DISK_FDS).
  const root = await open(opts.spec.rootImage, constants.O_RDONLY | constants.O_NOFOLLOW);
  const jobRw = await open(opts.spec.jobImage, constants.O_RDWR | constants.O_NOFOLLOW).catch(async (e: unknown) => { await root.close(); throw e; });
  const jobRo = await open(opts.spec.jobImage, constants.O_RDONLY | constants.O_NOFOLLOW).catch(async (e: unknown) => { await root.close(); await jobRw.close(); throw e; });
  // Root layers (qcow2 over root.img, bottom first) follow as fds 6.. (see layerFds); a restore's
  // files (moreFiles: state, template overlay) take that place instead: a restore never has layers.
  if (opts.spec.rootLayers?.length && opts.moreFiles?.length) throw new JrError('JR_E_INTERNAL', 'a VM with root layers cannot also be restored from a template');
  const layers: FileHandle[] = [];
  let child: Child;
  try {
    for (const f of opts.spec.rootLayers ?? []) layers.push(await open(f, constants.O_RDONLY | constants.O_NOFOLLOW));
    const top = opts.spec.rootLayers?.at(-1);
    if (top !== undefined && opts.spec.rootWritable) layers.push(await open(top, constants.O_RDWR | constants.O_NOFOLLOW));
    for (const f of opts.moreFiles ?? []) layers.push(await open(f, constants.O_RDONLY | constants.O_NOFOLLOW));
    // Its own process group (detached): our kills reach anything qemu (or a wrapper) started.
    ({ child } = await spawn(argv[0]!, argv.slice(1), {
      env: { TMPDIR: opts.tmpDir }, stdin: opts.onStarted ? 'pipe' : 'ignore', stderr: 'pipe',
      extraFds: [root.fd, jobRw.fd, jobRo.fd, ...layers.map((l) => l.fd)], detached: true,
    }));
  } finally {
    await Promise.all([root.close(), jobRw.close(), jobRo.close(), ...layers.map((l) => l.close())]);
  }
  if (child.pid) opts.onSpawn?.(child.pid);
  if (child.pid && child.stdin) {
    child.stdin.on('error', () => undefined); // qemu gone: the outcome below says why
    opts.onStarted?.({ stdin: child.stdin, pid: child.pid });
  }
  const signalGroup = (sig: NodeJS.Signals): void => {
    try { if (child.pid) { process.kill(-child.pid, sig); return; } } catch { /* group gone: try the process */ }
    child.kill(sig);
  };

  let killTimer: NodeJS.Timeout | undefined;
  const kill = (end: VmEnd, reason: string): void => {
    if (killedFor || child.exitCode !== null) return;
    killedFor = { end, reason };
    signalGroup('SIGTERM');
    killTimer = setTimeout(() => signalGroup('SIGKILL'), opts.killGraceMs);
  };
  const bootTimer = setTimeout(() => kill('boot-failed',
    `no sign of life from the guest within ${Math.round(opts.bootTimeoutMs / 1000)}s`), opts.bootTimeoutMs);
  const termTimer = setTimeout(() => kill('timeout', `the job ran past its ${Math.round(opts.timeoutMs / 1000)}s limit`), opts.timeoutMs);
  const onAbort = (): void => kill('aborted', 'stopped by the service (shutdown)');
  if (opts.signal?.aborted) onAbort();
  opts.signal?.addEventListener('abort', onAbort);

  child.stdout?.on('data', (chunk: Buffer) => {
    sawOutput = true;
    log.write(chunk);
    opts.onConsole?.(chunk);
    for (const ev of parser.feed(chunk)) {
      opts.onEvent?.(ev);
      if (ev.kind === 'start' && bootMs === null) { bootMs = Date.now() - started; clearTimeout(bootTimer); } else if (ev.kind === 'exit' && exitCode === null) exitCode = ev.code;
      else if (ev.kind === 'end') clean = true;
      else if (ev.kind === 'bad-image') badImage = ev.reason;
      else if (ev.kind === 'initramfs-failed') initramfsFailure = ev.reason;
    }
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-4000);
  });

  const result = await child;
  clearTimeout(bootTimer); clearTimeout(termTimer); clearTimeout(killTimer);
  // Whatever is left in qemu's process group outlived the VM: it has no business running on.
  try { if (child.pid) process.kill(-child.pid, 'SIGKILL'); } catch { /* nothing left */ }
  opts.signal?.removeEventListener('abort', onAbort);
  await log.close();

  const base = {
    bootMs, totalMs: Date.now() - started, consoleBytes: log.written + log.dropped,
    consoleTruncated: log.truncated, lastLine: parser.lastLine, sawOutput,
    qemuExitCode: typeof result.exitCode === 'number' ? result.exitCode : null,
    qemuSignal: result.signal ?? null, stderrTail: stderr.trim(), argv,
  };
  const k = killedFor as { end: VmEnd; reason: string } | null;
  return { ...base, ...classifyEnd({ killedFor: k, exitCode, clean, badImage, initramfsFailure, bootMs, lastLine: parser.lastLine,
    qemuExitCode: base.qemuExitCode, qemuSignal: base.qemuSignal, stderrTail: base.stderrTail }) };
}

/** What launchVm observed of one VM run, as classifyEnd needs it. */
export interface EndFacts {
  /** Our own kill (watchdog or abort) and its reason, if we killed it. */
  killedFor: { end: VmEnd; reason: string } | null;
  /** From the markers: exit=N, end, bad-image=WHY, the initramfs's failure line. */
  exitCode: number | null;
  clean: boolean;
  badImage: string | null;
  initramfsFailure: string | null;
  /** ms to the start marker; null: the guest never started. */
  bootMs: number | null;
  lastLine: string;
  qemuExitCode: number | null;
  qemuSignal: string | null;
  stderrTail: string;
}

/** How a VM run ended, from what was observed (pure: the whole policy of launchVm's outcome). */
export function classifyEnd(f: EndFacts): Pick<VmOutcome, 'end' | 'exitCode' | 'clean' | 'reason'> {
  const k = f.killedFor;
  // A timeout or abort wins even over an exit marker seen just before: the image may be mid-write.
  if (k && k.end !== 'boot-failed') return { end: k.end, exitCode: null, clean: false, reason: k.reason };
  if (f.exitCode !== null) {
    return { end: 'exited', exitCode: f.exitCode, clean: f.clean,
      reason: f.exitCode === 0 ? 'the job succeeded' : `the job exited with status ${f.exitCode}` };
  }
  if (f.badImage !== null) {
    return { end: 'bad-image', exitCode: null, clean: false,
      reason: `the guest could not use the job image (${f.badImage}): not a mountable ext2/3/4 filesystem` };
  }
  if (k) return { end: 'boot-failed', exitCode: null, clean: false, reason: k.reason };
  // Not our kill: a signal from outside (an operator, the host's OOM killer). qemu turns TERM/INT/HUP
  // into an orderly exit, so its own "terminating on signal" line counts as well. A fault signal
  // (SEGV, ABRT, ...) is qemu crashing, which a guest may provoke: that stays a crash below.
  const terminated = /terminating on signal (\d+)/.exec(f.stderrTail);
  const outside = f.qemuSignal !== null && OUTSIDE_SIGNALS.has(f.qemuSignal) ? f.qemuSignal
    : terminated ? `signal ${terminated[1]}` : null;
  if (outside !== null) {
    return { end: 'killed', exitCode: null, clean: false,
      reason: `qemu was killed by ${outside} from outside jobrunner (an operator or the host's OOM killer), ${f.bootMs === null ? 'before the guest started' : 'while the job ran'}` };
  }
  if (f.initramfsFailure !== null) {
    return { end: 'boot-failed', exitCode: null, clean: false, reason: `the guest failed to boot: ${f.initramfsFailure}` };
  }
  if (f.bootMs === null) {
    if (f.qemuSignal) {
      return { end: 'boot-failed', exitCode: null, clean: false, reason: `qemu crashed (${f.qemuSignal}) before the guest started` };
    }
    const why = f.stderrTail ? `qemu failed: ${f.stderrTail.split('\n').slice(-3).join(' | ')}`
      : `qemu ended (exit ${f.qemuExitCode ?? f.qemuSignal}) before the guest started`;
    return { end: 'boot-failed', exitCode: null, clean: false, reason: why };
  }
  return { end: 'crashed', exitCode: null, clean: false,
    reason: `the guest stopped without reporting an exit status (${f.qemuSignal ? `qemu crashed: ${f.qemuSignal}` : `qemu exit ${f.qemuExitCode}`}); last console line: ${f.lastLine || '(none)'}` };
}
