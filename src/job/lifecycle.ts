// One job, start to finish, as a list of named steps: prepare -> base -> run -> compress ->
// publish -> drop claim. Each step registers the cleanup of what it creates the moment it exists;
// cleanups run in reverse in `finally`. The submitted input is never modified: the VM writes a
// sparse copy, so a rerun or a rejection always starts from what was submitted.
import { mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Settings } from '../config.js';
import { JrError, isJrError, messageOf } from '../errors.js';
import { copySparse } from '../fsutil.js';
import { loadBaseImage, type BaseImage } from '../image/base.js';
import { claimPaths, dropClaim, writeLease, type Claim } from '../spool/claim.js';
import { publish, tempName } from '../spool/publish.js';
import { compressFile } from '../xz/compress.js';
import { decompressFile, verifyXz } from '../xz/decompress.js';
import { sha256File } from './digest.js';
import { seconds, type JobStatus } from './result.js';
import { publishesToDone, transition, verbFor, type FinalStatus, type JobState } from './state.js';
import { handOver } from './run-as.js';
import { checkJobImage } from './validate.js';
import { runJobVm, type AccelState, type VmRunOutcome } from './vm-run.js';

export type JobEvent =
  | { type: 'started'; id: string; name: string; attempt: number }
  | { type: 'booted'; id: string; name: string; accel: string }
  | { type: 'finished'; id: string; name: string; status: FinalStatus; reason: string; path: string }
  | { type: 'requeued'; id: string; name: string; reason: string }
  | { type: 'stuck'; id: string; name: string; reason: string }
  | { type: 'step'; id: string; step: string; ms: number };

export interface LifecycleDeps {
  settings: Settings;
  accel: AccelState;
  version: string;
  emit: (ev: JobEvent) => void;
  /** Shutdown: kill the VM and leave the claim for the next start (not counted as an attempt). */
  signal: AbortSignal;
  runAs?: { uid: number; gid: number };
}

/** Prefix of a job's qemu scratch directory under the system temp dir (swept on recovery). */
export function vmTmpPrefix(id: string): string {
  return `jobrunner-vm-${id}-`;
}

export type JobEnd =
  | { kind: 'published'; status: FinalStatus; file: string }
  | { kind: 'requeued' }
  | { kind: 'stuck'; reason: string };

interface Verdict { status: FinalStatus; exitCode: number | null; reason: string; publishWork: boolean }

/** Map a VM outcome to a final status ('aborted' is handled before this). */
export function verdictOf(out: VmRunOutcome): Verdict {
  switch (out.end) {
    case 'exited': return { status: out.exitCode === 0 ? 'succeeded' : 'failed', exitCode: out.exitCode, reason: out.reason, publishWork: true };
    case 'timeout': return { status: 'timeout', exitCode: null, reason: out.reason, publishWork: true };
    case 'boot-failed': return { status: 'boot-failed', exitCode: null, reason: out.reason, publishWork: true };
    case 'bad-image': return { status: 'rejected', exitCode: null, reason: out.reason, publishWork: false };
    case 'crashed': case 'aborted': return { status: 'failed', exitCode: null, reason: out.reason, publishWork: true };
  }
}

/** Run a claimed job to a published result (or a requeue on shutdown). Never throws for job faults. */
export async function runJob(claim: Claim, deps: LifecycleDeps): Promise<JobEnd> {
  const { settings: s, emit } = deps;
  const { lease, dir, input } = claim;
  const paths = claimPaths(dir);
  const cleanups: Array<() => Promise<unknown>> = [];
  let state: JobState = 'claimed';
  const timings = { boot: null as number | null, run: null as number | null, compress: null as number | null };
  let inputBytes: number | null = null;
  let inputSha: string | null = null;
  let base: BaseImage | null = null;
  let vm: VmRunOutcome | null = null;
  const step = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    const t = Date.now();
    try { return await fn(); } finally { emit({ type: 'step', id: lease.id, step: name, ms: Date.now() - t }); }
  };

  lease.startedAt = new Date().toISOString();
  lease.servicePid = process.pid;
  lease.qemuPid = null;
  lease.requeued = false;
  await writeLease(dir, lease);
  emit({ type: 'started', id: lease.id, name: lease.name, attempt: lease.attempt });

  try {
    let verdict: Verdict;
    try {
      if (lease.attempt > s.maxAttempts) {
        throw new JrError('JR_E_INTERNAL', `interrupted: the service stopped while running this job ${lease.attempt - 1} times (max-attempts ${s.maxAttempts})`);
      }
      await step('prepare', async () => {
        inputBytes = (await stat(input)).size;
        inputSha = await sha256File(input);
        await rm(paths.work, { force: true });
        cleanups.push(() => rm(paths.work, { force: true }));
        if (lease.compressed) await decompressFile(input, paths.work, { sizeCap: s.maxImageSize, signal: deps.signal });
        else { await checkJobImage(input, s.maxImageSize); await copySparse(input, paths.work); }
        await checkJobImage(paths.work, s.maxImageSize);
      });
      base = await step('base-image', async () => {
        try {
          return await loadBaseImage(s.baseImageDir, lease.base ?? s.baseImage);
        } catch (e) {
          // A job naming a base we do not have is the job's problem; a broken default is ours.
          if (lease.base !== null && isJrError(e, 'JR_E_BASE_IMAGE')) throw new JrError('JR_E_INPUT', `the job asks for base image '${lease.base}': ${messageOf(e)}`);
          throw e;
        }
      });
      if (deps.signal.aborted) return await requeue('shutdown before the VM started');
      state = transition(state, 'start');
      // qemu's scratch (snapshot overlay, boot files): private, per job, reachable by the qemu user.
      const vmTmp = await mkdtemp(path.join(os.tmpdir(), vmTmpPrefix(lease.id)));
      cleanups.push(() => rm(vmTmp, { recursive: true, force: true }));
      await handOver(deps.runAs, [paths.work, vmTmp]);
      const chosen = base;
      vm = await step('run', () => runJobVm({
        image: paths.work, base: chosen, settings: s, logPath: paths.log, tmpDir: vmTmp, runAs: deps.runAs, signal: deps.signal,
        onSpawn: (pid) => { lease.qemuPid = pid; void writeLease(dir, lease).catch(() => undefined); },
      }, deps.accel));
      if (vm.end === 'aborted') return await requeue(vm.reason);
      emit({ type: 'booted', id: lease.id, name: lease.name, accel: vm.accel });
      timings.boot = vm.bootMs;
      timings.run = vm.bootMs === null ? null : vm.totalMs - vm.bootMs;
      verdict = verdictOf(vm);
    } catch (e) {
      if (deps.signal.aborted) return await requeue('shutdown');
      const rejected = isJrError(e, 'JR_E_INPUT') || isJrError(e, 'JR_E_XZ');
      const interrupted = isJrError(e, 'JR_E_INTERNAL') && messageOf(e).startsWith('interrupted');
      verdict = { status: rejected ? 'rejected' : interrupted ? 'failed' : 'error', exitCode: null, reason: messageOf(e), publishWork: false };
    }

    state = transition(state, verbFor(verdict.status));
    const target = publishesToDone(verdict.status) ? s.done : s.failed;
    const temps: Record<string, string> = {};
    let output: JobStatus['output'] = null;
    if (verdict.publishWork) {
      const tmpXz = tempName(target, `${lease.name}.img.xz`);
      cleanups.push(() => rm(tmpXz, { force: true }));
      const c = await step('compress', () => compressFile(paths.work, tmpXz));
      await step('verify', () => verifyXz(tmpXz, { sizeCap: s.maxImageSize }));
      timings.compress = c.durationMs;
      output = { bytes: c.bytesOut, sha256: c.sha256 };
      temps['img.xz'] = tmpXz;
    } else {
      // Not run (or not runnable): publish what was submitted, untouched, as evidence.
      const ext = lease.compressed ? 'img.xz' : 'img';
      const tmpIn = tempName(target, `${lease.name}.${ext}`);
      cleanups.push(() => rm(tmpIn, { force: true }));
      await rename(input, tmpIn).catch(async (e: NodeJS.ErrnoException) => {
        if (e.code !== 'EXDEV') throw e;
        await copySparse(input, tmpIn);
      });
      temps[ext] = tmpIn;
    }
    const tmpLog = tempName(target, `${lease.name}.log`);
    cleanups.push(() => rm(tmpLog, { force: true }));
    const consoleText = await readFile(paths.log).catch(() => Buffer.alloc(0));
    await writeFile(tmpLog, Buffer.concat([consoleText, Buffer.from(`\n[jobrunner] ${verdict.status}: ${verdict.reason}\n`)]));
    temps.log = tmpLog;

    const finishedAt = new Date().toISOString();
    const finalName = await step('publish', () => publish(target, lease.name, {
      temps,
      status: (publishedAs): JobStatus => ({
        name: lease.name, id: lease.id, status: verdict.status, exitCode: verdict.exitCode, reason: verdict.reason,
        submitted: lease.submitted, publishedAs, attempt: lease.attempt,
        submittedAt: lease.submittedAt, startedAt: lease.startedAt, finishedAt,
        durations: {
          wait: seconds(Date.parse(lease.startedAt ?? finishedAt) - Date.parse(lease.submittedAt)),
          boot: seconds(timings.boot), run: seconds(timings.run), compress: seconds(timings.compress),
        },
        input: { bytes: inputBytes, sha256: inputSha },
        output,
        baseImage: base ? { name: base.name, sha256: base.rootSha256 } : null,
        accel: vm?.accel ?? null,
        console: vm ? { bytes: vm.consoleBytes, truncated: vm.consoleTruncated, lastLine: vm.lastLine } : null,
        version: deps.version,
      }),
    }));
    await dropClaim(dir);
    const file = path.join(target, `${finalName}.json`);
    emit({ type: 'finished', id: lease.id, name: lease.name, status: verdict.status, reason: verdict.reason, path: file });
    return { kind: 'published', status: verdict.status, file };
  } catch (e) {
    // Publishing failed (disk full, I/O error): the input is still in the claim; the next start retries.
    const reason = `could not publish: ${messageOf(e)}`;
    emit({ type: 'stuck', id: lease.id, name: lease.name, reason });
    return { kind: 'stuck', reason };
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  }

  async function requeue(reason: string): Promise<JobEnd> {
    lease.requeued = true;
    lease.qemuPid = null;
    await writeLease(dir, lease);
    emit({ type: 'requeued', id: lease.id, name: lease.name, reason });
    return { kind: 'requeued' };
  }
}
