// Run one job image under bubblewrap instead of a VM (--isolation unshare), with the VM's contract:
// the same markers, exit codes, timeouts and console cap, and the job image written in place with
// the result. Steps: copy the job's files into a trusted ext4 (stage.ts), mount it and an overlay of
// the shifted base root on the host, start the sandbox in fresh cgroups, wait, then trim, map
// ownership back, unmount and put the trusted image where the job image was.
import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, mkdtemp, rename, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Settings } from '../config.js';
import { JrError, isJrError, messageOf } from '../errors.js';
import type { BaseImage } from '../image/base.js';
import { spawn, which, type Child } from '../proc.js';
import { ConsoleLog } from '../vm/console.js';
import type { VmEnd, VmOutcome } from '../vm/launch.js';
import { MarkerParser } from '../vm/markers.js';
import { makeLimits } from './limits.js';
import { mountLoop, mountOverlay, trim, unmount, unmountAll } from './mounts.js';
import { signalNamespace } from './procs.js';
import { JOIN_FAILED, sandboxArgv, type SandboxCap } from './sandbox.js';
import { shiftedRoot } from './shift.js';
import { makeEmptyExt4, stageJobFiles } from './stage.js';
import { openSandboxUserns, setUpSandbox } from './userns.js';

/** A VM outcome with the accelerator named 'unshare': what the lifecycle publishes (accel: "unshare"). */
export type UnshareOutcome = VmOutcome & { accel: 'unshare'; accelReason: string };
import { shiftDown } from './tree.js';

export type UnshareSettings = Pick<Settings, 'timeout' | 'bootTimeout' | 'killGrace' | 'logCap' | 'memory' | 'cpus'
  | 'unshareUidBase' | 'unshareCache' | 'unsharePids' | 'unshareScratch'>;

export interface UnshareRunRequest {
  /** The job image: read (never mounted), then replaced by the result when the job ran. */
  image: string;
  base: BaseImage;
  settings: UnshareSettings;
  logPath: string | null;
  /** Names the cgroups and the scratch directory (a job id; random when absent). */
  id?: string;
  /** Parent of the per-job scratch directory (default: the system temp dir). */
  tmpParent?: string;
  onConsole?: (chunk: Buffer) => void;
  onSpawn?: (pid: number) => void;
  /** A line for the operator's log (fallbacks taken, copy statistics). */
  onNote?: (line: string) => void;
  signal?: AbortSignal;
  /**
   * Derived base layers (ext4 images from deps/layer.ts), bottom first as for the VM: each one's
   * upper/ is stacked read-only over the shifted base root, the last one topmost.
   */
  rootLayers?: string[];
  /**
   * The last of rootLayers is this run's writable upper (a deps install writing its layer) instead
   * of a throwaway scratch filesystem; trimmed afterwards so the image stays sparse.
   */
  rootWritable?: boolean;
  /** Capabilities root inside keeps (a deps install: INSTALL_CAPS); a job gets none. */
  caps?: readonly SandboxCap[];
}

/** After the init's `end` marker, how long the sandbox may take to exit by itself. */
const END_GRACE_MS = 2000;

/** Prefix of unshare scratch directories under the temp dir (start-up may unmount and remove them). */
export const UNSHARE_TMP_PREFIX = 'jobrunner-unshare-';

/** Run the job in a bubblewrap sandbox until it ends; the outcome has the VM's shape, accel 'unshare'. */
export async function runJobUnshare(req: UnshareRunRequest): Promise<UnshareOutcome> {
  const s = req.settings;
  const started = Date.now();
  if (process.getuid?.() !== 0) throw new JrError('JR_E_PERMISSION', '--isolation unshare needs root (it mounts the trusted job filesystem and the base overlay, and maps an id range)');
  if (!(await which('bwrap'))) throw new JrError('JR_E_CONFIG', '--isolation unshare needs bubblewrap: apt-get install -y bubblewrap');
  const id = (req.id ?? `run-${randomBytes(6).toString('hex')}`).replace(/[^\w-]/g, '_');
  const idBase = s.unshareUidBase;
  const lowerImage = await shiftedRoot(req.base, s.unshareCache, idBase);
  const dir = await mkdtemp(path.join(req.tmpParent ?? os.tmpdir(), `${UNSHARE_TMP_PREFIX}${id}-`));
  // It holds the job's files (the trusted image, /job and the merged root mounted below it): no
  // host user but root may enter it. bwrap, started as the range's first id (setpriv, no groups,
  // no capabilities over root's files even in its namespace), must reach the two it binds: it gets
  // in by the directory's group, that id's, which no host user has (scripts/setup reserves the range).
  await chown(dir, 0, idBase);
  await chmod(dir, 0o710);
  const d = { lower: path.join(dir, 'lower'), scratch: path.join(dir, 'scratch'), merged: path.join(dir, 'merged'), job: path.join(dir, 'job') };
  for (const p of Object.values(d)) await mkdir(p);
  const trusted = path.join(dir, 'job.img');
  const note = (line: string): void => req.onNote?.(line);
  try {
    const size = (await stat(req.image)).size;
    await makeEmptyExt4(trusted, size, idBase, 'job');
    await mountLoop(trusted, d.job, false);
    try {
      const st = await stageJobFiles(req.image, d.job, idBase);
      note(`copied ${st.entries} entries into the trusted job filesystem in ${st.ms} ms` +
        `${st.dropped ? `; left out ${st.dropped} special files (devices, FIFOs, sockets)` : ''}`);
    } catch (e) {
      if (!isJrError(e, 'JR_E_INPUT')) throw e;
      return notRun(started, 'bad-image', `the job image could not be used (${messageOf(e)})`);
    }
    const layers = req.rootLayers ?? [];
    if (req.rootWritable && layers.length === 0) throw new JrError('JR_E_INTERNAL', 'rootWritable needs a root layer to write');
    const below = req.rootWritable ? layers.slice(0, -1) : layers;
    // The writable layer: the install's own layer image, or a throwaway sparse ext4 of
    // --unshare-scratch (the VM's snapshot overlay, bounded).
    if (req.rootWritable) {
      await mountLoop(layers.at(-1)!, d.scratch, false);
    } else {
      const scratchImage = path.join(dir, 'scratch.img');
      await makeEmptyExt4(scratchImage, s.unshareScratch, 0, 'scratch');
      await mountLoop(scratchImage, d.scratch, false);
    }
    const upper = path.join(d.scratch, 'upper');
    const work = path.join(d.scratch, 'work');
    await mkdir(upper, { mode: 0o755, recursive: true });
    await mkdir(work, { recursive: true });
    await chown(upper, idBase, idBase);
    // Read-only layers, each the upper/ of an earlier install: topmost first in lowerdir.
    const lowers = [d.lower];
    for (const [i, file] of below.entries()) {
      const mnt = path.join(dir, `layer${i}`);
      await mkdir(mnt);
      await mountLoop(file, mnt, true);
      const up = path.join(mnt, 'upper');
      if (!(await stat(up).then((x) => x.isDirectory(), () => false))) {
        throw new JrError('JR_E_INTERNAL', `the derived layer ${file} has no upper/ directory (not an unshare layer?)`);
      }
      lowers.unshift(up);
    }
    await mountLoop(lowerImage, d.lower, true);
    await mountOverlay(lowers, upper, work, d.merged);

    const limits = await makeLimits(id, { memory: s.memory, cpus: s.cpus, pids: s.unsharePids });
    for (const n of limits.notes) note(n);
    // What kept the run's filesystems from being released cleanly: an install's layer is not
    // usable then (something may still write it).
    const unclean: string[] = [];
    let out: UnshareOutcome;
    try {
      out = await sandbox(req, { root: d.merged, job: d.job, procsFiles: limits.procsFiles, rlimits: limits.rlimits, caps: req.caps ?? [] }, started);
      const oom = await limits.oomKills();
      if (oom) note(`the memory cgroup OOM-killed ${oom} process(es) of the job`);
    } finally {
      // Whatever of the job is still alive (a process that left the pid namespace's reach, one that
      // is slow to die) is in its cgroups: kill them all before the mounts go.
      const left = await limits.killAll();
      if (left > 0) {
        note(`${left} process(es) of the job's cgroups survived SIGKILL for 10 s (uninterruptible sleep?)`);
        unclean.push(`${left} process(es) survived SIGKILL`);
      }
      await limits.cleanup();
    }
    const release = async (mp: string): Promise<void> => {
      if (!(await unmount(mp))) return;
      note(`${path.basename(mp)} was still busy at the end of the run: detached lazily`);
      unclean.push(`${path.basename(mp)} was busy (detached lazily)`);
    };
    await release(d.merged);
    for (const i of below.keys()) await release(path.join(dir, `layer${i}`));
    await release(d.lower);
    if (req.rootWritable) {
      // What stays in the layer is upper/ alone: overlayfs's work directory is its scratch.
      await rm(work, { recursive: true, force: true });
      await trim(d.scratch);
    }
    await release(d.scratch);
    if (req.rootWritable && unclean.length > 0 && out.end === 'exited') {
      // The install's layer may still be mounted read-write (a lazily detached mount, or the
      // overlay above it, held by what survived): never report it as written.
      out = { ...out, end: 'crashed', exitCode: null, clean: false,
        reason: `the install's layer was not released cleanly (${unclean.join('; ')}); it is not used` };
    }
    if (out.end !== 'aborted') {
      await trim(d.job);
      await shiftDown(d.job, { base: idBase });
    }
    await release(d.job);
    if (out.end !== 'aborted') await replace(req.image, trusted);
    return out;
  } finally {
    await unmountAll(dir);
    await rm(dir, { recursive: true, force: true });
  }
}

/** True once `child` has exited (within `ms`). */
async function exitsWithin(child: Child, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return true;
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    child.once('exit', () => { clearTimeout(t); resolve(true); });
  });
}

/** Wait until `pid` has no /proc entry at all (a zombie still has one); false past `ms`. */
async function reaped(pid: number, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (!(await stat(`/proc/${pid}`).then(() => true, () => false))) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

/** Put the trusted image where the job image was, keeping the job image's owner and mode. */
async function replace(image: string, trusted: string): Promise<void> {
  const st = await stat(image);
  const tmp = path.join(path.dirname(image), `.${path.basename(image)}.unshare-${randomBytes(4).toString('hex')}`);
  // Same filesystem: a rename; the caller's directory is on another one here and there: copy then rename.
  try { await rename(trusted, image); } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
    const { copySparse } = await import('../fsutil.js');
    await copySparse(trusted, tmp);
    await rename(tmp, image);
  }
  await chown(image, st.uid, st.gid);
  await chmod(image, st.mode & 0o7777);
}

function notRun(started: number, end: VmEnd, reason: string): UnshareOutcome {
  return { end, exitCode: null, clean: false, reason, bootMs: null, totalMs: Date.now() - started, consoleBytes: 0,
    consoleTruncated: false, lastLine: '', sawOutput: false, qemuExitCode: null, qemuSignal: null, stderrTail: '', argv: [],
    accel: 'unshare', accelReason: 'bubblewrap namespaces (--isolation unshare)' };
}

interface Mounted { root: string; job: string; procsFiles: string[]; rlimits: string[]; caps: readonly SandboxCap[] }

/** Start bwrap, map its user namespace, stream the console, enforce the watchdogs; never throws for job behaviour. */
async function sandbox(req: UnshareRunRequest, m: Mounted, started: number): Promise<UnshareOutcome> {
  const s = req.settings;
  const nonce = randomBytes(12).toString('hex');
  const argv = sandboxArgv({ idBase: s.unshareUidBase, root: m.root, job: m.job, tmpBytes: Math.floor(s.memory / 2), nonce,
    procsFiles: m.procsFiles, rlimits: m.rlimits, caps: m.caps });
  const log = new ConsoleLog(req.logPath, s.logCap);
  const parser = new MarkerParser(nonce);
  let bootMs: number | null = null;
  let exitCode: number | null = null;
  let clean = false;
  let stderr = '';
  let sawOutput = false;
  let killedFor: { end: VmEnd; reason: string } | null = null;
  let ns: string | null = null;
  let nsInit: number | null = null;
  const { child } = await spawn(argv[0]!, argv.slice(1), { cleanEnv: true, env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' }, stdin: 'ignore', stderr: 'pipe', extraPipes: 2, detached: true });
  if (child.pid) req.onSpawn?.(child.pid);
  const [block, info] = [child.stdio[3], child.stdio[4]] as unknown as [NodeJS.WritableStream & { destroy(): void }, NodeJS.ReadableStream];
  const exited = (): boolean => child.exitCode !== null || child.signalCode !== null;
  // Root writes the 65536-id map bwrap cannot write itself and denies nested user namespaces, then
  // lets the sandbox go on; on any failure bwrap is killed instead (userns.ts).
  const setUp = setUpSandbox({ pid: child.pid ?? -1, info, block, exited, exit: child.then(() => undefined, () => undefined) }, async (pid) => {
    const u = await openSandboxUserns(pid, child.pid ?? -1);
    // Checked: bwrap's child, in namespaces of its own (what the kills below may target).
    nsInit = pid;
    ns = u.pidNs;
    try {
      await u.map(s.unshareUidBase);
      await u.denyUserNamespaces();
    } finally { await u.close(); }
  });

  const killNamespace = async (sig: NodeJS.Signals): Promise<void> => {
    if (ns) await signalNamespace(ns, sig, sig === 'SIGKILL' ? [] : [nsInit ?? -1]);
    if (sig !== 'SIGKILL') return;
    // SIGKILL of the namespace's pid 1 ends every process in it. The outer bwrap (our child) reaps
    // it and then exits: killing both at once orphaned the inner one, leaving its zombie to the
    // host's init (the adversarial ledger saw it). Only if the outer one does not exit by itself is
    // its process group killed too (what ran before the namespace existed).
    // By pid only until bwrap has exited: its child's pid may be free for reuse after that (the
    // namespace kill above reaches an orphaned one).
    try { if (nsInit && !exited()) process.kill(nsInit, 'SIGKILL'); } catch { /* gone */ }
    if (nsInit && await exitsWithin(child, 3000)) return;
    try { if (child.pid) process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ }
  };
  let killTimer: NodeJS.Timeout | undefined;
  let endTimer: NodeJS.Timeout | undefined;
  const kill = (end: VmEnd, reason: string): void => {
    if (killedFor || child.exitCode !== null) return;
    killedFor = { end, reason };
    void killNamespace('SIGTERM');
    killTimer = setTimeout(() => void killNamespace('SIGKILL'), s.killGrace);
  };
  const bootTimer = setTimeout(() => kill('boot-failed', `the sandbox showed no sign of life within ${Math.round(s.bootTimeout / 1000)}s`), s.bootTimeout);
  const termTimer = setTimeout(() => kill('timeout', `the job ran past its ${Math.round(s.timeout / 1000)}s limit`), s.timeout);
  const onAbort = (): void => kill('aborted', 'stopped by the service (shutdown)');
  if (req.signal?.aborted) onAbort();
  req.signal?.addEventListener('abort', onAbort);

  child.stdout?.on('data', (chunk: Buffer) => {
    sawOutput = true;
    log.write(chunk);
    req.onConsole?.(chunk);
    for (const ev of parser.feed(chunk)) {
      if (ev.kind === 'start' && bootMs === null) { bootMs = Date.now() - started; clearTimeout(bootTimer); } else if (ev.kind === 'exit' && exitCode === null) exitCode = ev.code;
      else if (ev.kind === 'end' && !clean) {
        clean = true;
        // The init is done (job reaped, leftovers killed, synced). A sandbox that does not end now
        // has had its pid 1 stopped or traced by the job: end it rather than wait for --timeout.
        endTimer = setTimeout(() => void killNamespace('SIGKILL'), END_GRACE_MS);
      }
    }
  });
  child.stderr?.on('data', (c: Buffer) => { stderr = (stderr + c.toString('utf8')).slice(-4000); });

  const result = await (child as Child);
  const { failure } = await setUp;
  clearTimeout(bootTimer); clearTimeout(termTimer); clearTimeout(killTimer); clearTimeout(endTimer);
  req.signal?.removeEventListener('abort', onAbort);
  // Nothing of the sandbox outlives it: bwrap's pid 1 took its namespace down; make sure, and wait
  // until the namespace's pid 1 is reaped (by the outer bwrap; by the host's init if it was orphaned).
  await killNamespace('SIGKILL');
  if (nsInit !== null) await reaped(nsInit, 10_000);
  // bwrap, the block fd's only reader, has exited (execa closes it then too).
  block.destroy();
  await log.close();
  // Our set-up failed: bwrap was killed before the sandbox ran anything; not the job's doing.
  if (failure !== null) throw new JrError('JR_E_PROCESS', `could not set up the sandbox (${failure}): bwrap was killed before it ran anything`);
  if (nsInit === null && result.exitCode === JOIN_FAILED) {
    throw new JrError('JR_E_PROCESS', `could not put the sandbox in its cgroups before it started: ${stderr.trim().split('\n').slice(-3).join(' | ')}`);
  }

  const base = {
    bootMs, totalMs: Date.now() - started, consoleBytes: log.written + log.dropped, consoleTruncated: log.truncated,
    lastLine: parser.lastLine, sawOutput, qemuExitCode: typeof result.exitCode === 'number' ? result.exitCode : null,
    qemuSignal: result.signal ?? null, stderrTail: stderr.trim(), argv, accel: 'unshare' as const,
    accelReason: 'bubblewrap namespaces (--isolation unshare)',
  };
  const k = killedFor as { end: VmEnd; reason: string } | null;
  if (k && k.end !== 'boot-failed') return { ...base, end: k.end, exitCode: null, clean: false, reason: k.reason };
  if (exitCode !== null) {
    return { ...base, end: 'exited', exitCode, clean, reason: exitCode === 0 ? 'the job succeeded' : `the job exited with status ${exitCode}` };
  }
  if (k) return { ...base, end: 'boot-failed', exitCode: null, clean: false, reason: k.reason };
  if (bootMs === null) {
    return { ...base, end: 'boot-failed', exitCode: null, clean: false,
      reason: `the sandbox did not start: ${base.stderrTail.split('\n').slice(-3).join(' | ') || `bwrap exit ${base.qemuExitCode ?? base.qemuSignal}`}` };
  }
  return { ...base, end: 'crashed', exitCode: null, clean: false,
    reason: `the sandbox stopped without reporting an exit status (bwrap ${base.qemuSignal ?? `exit ${base.qemuExitCode}`}); last console line: ${parser.lastLine || '(none)'}` };
}
