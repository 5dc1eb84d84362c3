// One job, start to finish, as a list of named steps: prepare -> base -> run -> publish
// -> drop claim (the service screened the claimed entry before scheduling it: spool/reject.ts).
// Each step registers the cleanup of what it creates the moment it exists; cleanups
// run in reverse in `finally`. The submitted input is never modified: the VM writes a sparse copy,
// so a rerun or a rejection always starts from what was submitted.
import { lstat, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Settings } from '../config.js';
import { JrError, isJrError, messageOf } from '../errors.js';
import { copySparse, entryExists } from '../fsutil.js';
import { loadBaseImage } from '../image/base.js';
import { claimPaths, dropClaim, writeLease, type Claim } from '../spool/claim.js';
import { vmTmpPrefix } from '../spool/spool.js';
import { decompressFile } from '../xz/decompress.js';
import { digestFile } from '../image/meta.js';
import type { FinalStatus } from '../spool/record.js';
import { publishResult, type RunFacts, type Verdict } from './publish-result.js';
import { publishesToDone, transition, verbFor, type Verb } from './state.js';
import { handOver, type RunAs } from '../run-as.js';
import { vmRunner, type Runner } from './runner.js';
import { checkInputFile, checkJobImage } from './validate.js';
import type { AccelState, VmRunOutcome } from './vm-run.js';
import { loadJobManifest, prepareDeps, settingsFor } from './deps.js';
import { growJobDisk } from '../deps/grow-disk.js';

export type JobEvent =
  | { type: 'started'; id: string; name: string; attempt: number }
  | { type: 'booted'; id: string; name: string; accel: string }
  | { type: 'finished'; id: string; name: string; status: FinalStatus; reason: string; path: string }
  | { type: 'requeued'; id: string; name: string; reason: string }
  | { type: 'stuck'; id: string; name: string; reason: string }
  | { type: 'step'; id: string; step: string; ms: number }
  /** A cleanup (rm of work.img, the VM's scratch, a lease write) failed: disk may be leaking. */
  | { type: 'cleanupFailed'; id: string; what: string; err: string }
  /** The VM's start said something for the operator: a restore fell back to cold (warning), a template is being built (note). */
  | { type: 'warning'; id: string; name: string; reason: string }
  | { type: 'note'; id: string; name: string; reason: string };

export interface LifecycleDeps {
  settings: Settings;
  accel: AccelState;
  version: string;
  emit: (ev: JobEvent) => void;
  /** Shutdown: kill the VM and leave the claim for the next start (not counted as an attempt). */
  signal: AbortSignal;
  runAs?: RunAs;
  /** What runs the prepared job (default: the qemu VM, vmRunner(accel)). */
  runner?: Runner;
  /** Cancel (DELETE through the API): kill the VM and publish the job to failed/ as `cancelled`. */
  cancel?: AbortSignal;
}

export type JobEnd =
  | { kind: 'published'; status: FinalStatus; file: string }
  | { kind: 'requeued' }
  | { kind: 'stuck'; reason: string };

/** Map a VM outcome to a final status ('aborted' is handled before this). */
export function verdictOf(out: VmRunOutcome): Verdict {
  switch (out.end) {
    case 'exited': return { status: out.exitCode === 0 ? 'succeeded' : 'failed', exitCode: out.exitCode, reason: out.reason, publishWork: true };
    case 'timeout': return { status: 'timeout', exitCode: null, reason: out.reason, publishWork: true };
    case 'boot-failed': return { status: 'boot-failed', exitCode: null, reason: out.reason, publishWork: true };
    case 'bad-image': return { status: 'rejected', exitCode: null, reason: out.reason, publishWork: false };
    case 'crashed': case 'aborted': return { status: 'failed', exitCode: null, reason: out.reason, publishWork: true };
    // Killed from outside is not the job's doing: an error of the host, the image kept as it was.
    case 'killed': return { status: 'error', exitCode: null, reason: out.reason, publishWork: true };
  }
}

// A compressed input can exceed its content by the xz container overhead, never by more.
const xzSlack = (cap: number): number => cap + Math.ceil(cap / 64) + (1 << 20);

/** Run a claimed job to a published result (or a requeue on shutdown). Never throws for job faults. */
export async function runJob(claim: Claim, deps: LifecycleDeps): Promise<JobEnd> {
  const { settings: s, emit } = deps;
  const { lease, dir, input } = claim;
  const paths = claimPaths(dir);
  const runner = deps.runner ?? vmRunner(deps.accel);
  const cleanups: Array<{ what: string; fn: () => Promise<unknown> }> = [];
  /** A remote run detached at shutdown goes on over the work image: the cleanup leaves it. */
  let keepWork = false;
  const facts: RunFacts = { timings: { boot: null, run: null, compress: null }, input: { bytes: null, sha256: null }, base: null, vm: null };
  const step = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    const t = Date.now();
    try {
      return await fn();
    } catch (e) {
      // Say where it happened: the first step that saw the error names it.
      if (isJrError(e)) { e.context.jobId ??= lease.id; e.context.step ??= name; }
      throw e;
    } finally { emit({ type: 'step', id: lease.id, step: name, ms: Date.now() - t }); }
  };
  /** Move the job's state (kept in its lease) by `verb`; the lease is written by the caller. */
  const move = (verb: Verb): void => { lease.state = transition(lease.state, verb); };
  const cleanupFailed = (what: string) => (e: unknown): void => emit({ type: 'cleanupFailed', id: lease.id, what, err: messageOf(e) });

  lease.startedAt = new Date().toISOString();
  lease.servicePid = process.pid;
  lease.qemuPid = null;
  lease.requeued = false;
  await writeLease(dir, lease);
  emit({ type: 'started', id: lease.id, name: lease.name, attempt: lease.attempt });

  // Shutdown and cancel both stop the VM; which one it was decides requeue or `cancelled`.
  const stopSignal = deps.cancel ? AbortSignal.any([deps.signal, deps.cancel]) : deps.signal;
  const cancelled = (): Verdict | null => (deps.cancel?.aborted && !deps.signal.aborted
    ? { status: 'cancelled', exitCode: null, reason: String(deps.cancel.reason ?? 'cancelled'), publishWork: false } : null);
  try {
    let verdict: Verdict;
    let inputHash: Promise<string | null> = Promise.resolve(null);
    try {
      if (deps.cancel?.aborted) throw new JrError('JR_E_INTERNAL', 'cancelled before it started');
      if (lease.attempt > s.maxAttempts) {
        throw new JrError('JR_E_INTERRUPTED', `interrupted: the service stopped while running this job ${lease.attempt - 1} times (max-attempts ${s.maxAttempts})`, { jobId: lease.id });
      }
      // A run shipped elsewhere before a restart (lease.remote) is re-attached to, over the work
      // image it was started on; an infrastructure fault (vm.requeue) runs it again from the input.
      for (;;) {
        const attach = lease.remote ? await entryExists(paths.work) : false;
        await step('prepare', async () => {
          cleanups.push({ what: paths.work, fn: () => (keepWork ? Promise.resolve() : rm(paths.work, { force: true })) });
          facts.input.bytes = (await lstat(input)).size;
          if (attach) { inputHash = digestFile(input).then((d) => d.sha256, () => null); return; }
          await rm(paths.work, { force: true });
          // Size first, by fstat: a huge sparse file is refused without reading (or hashing) it.
          await checkInputFile(input, lease.compressed ? xzSlack(s.maxImageSize) : s.maxImageSize);
          // Hashing a large sparse input takes seconds: do it while the VM runs (the input is never
          // written), and collect the digest before publishing.
          inputHash = digestFile(input).then((d) => d.sha256, () => null);
          if (lease.compressed) await decompressFile(input, paths.work, { sizeCap: s.maxImageSize, signal: stopSignal });
          else { await checkJobImage(input, s.maxImageSize); await copySparse(input, paths.work); }
          await checkJobImage(paths.work, s.maxImageSize);
        });
        // deps (issue 11): the job's jobrunner.json, checked before boot (a bad one rejects the job).
        const manifest = await step('manifest', () => loadJobManifest(paths.work, s));
        const vmSettings = settingsFor(s, manifest);
        facts.publish = manifest.publish;
        // deps (issue 11): the manifest's disk: grow our copy of the job disk (confined), not on a re-attach.
        const disk = manifest.disk;
        if (disk !== null && !attach) {
          const grown = await step('disk', () => growJobDisk(paths.work, disk));
          if (grown) emit({ type: 'note', id: lease.id, name: lease.name, reason: `job disk grown to ${grown.freeAfter} bytes free (manifest disk)` });
        }
        facts.base = await step('base-image', async () => {
          try {
            return await loadBaseImage(s.baseImageDir, lease.base ?? s.baseImage);
          } catch (e) {
          // A job naming a base we do not have is the job's problem; a broken default is ours.
            if (lease.base !== null && isJrError(e, 'JR_E_BASE_IMAGE')) throw new JrError('JR_E_INPUT', `the job asks for base image '${lease.base}': ${messageOf(e)}`, { cause: e });
            throw e;
          }
        });
        // deps (issue 11): resolve + fetch on the host, install in a VM into a cached derived layer.
        const base = facts.base;
        const prepared = await step('deps', () => prepareDeps(manifest, base, { settings: s, accel: deps.accel, runAs: deps.runAs, signal: deps.signal, spool: s.queue }));
        facts.deps = prepared?.record ?? null;
        if (deps.signal.aborted) return await requeue('shutdown before the VM started');
        move('start');
        await writeLease(dir, lease);
        // qemu's scratch (snapshot overlay, boot files): private, per job, reachable by the qemu user.
        const vmTmp = await mkdtemp(path.join(os.tmpdir(), `${vmTmpPrefix(s.queue, lease.id)}-`));
        cleanups.push({ what: vmTmp, fn: () => rm(vmTmp, { recursive: true, force: true }) });
        await handOver(deps.runAs, [paths.work, vmTmp]);
        const chosen = facts.base;
        const vm = await step('run', () => runner.run({
          image: paths.work, base: chosen, settings: vmSettings, rootLayers: prepared?.rootLayers, logPath: paths.log, tmpDir: vmTmp,
          runAs: deps.runAs, signal: stopSignal, cancel: deps.cancel,
          onSpawn: (pid) => { lease.qemuPid = pid; void writeLease(dir, lease).catch(cleanupFailed('lease (qemu pid)')); },
          job: { id: lease.id, dir, remote: attach ? lease.remote ?? null : null,
            onRemote: (r) => { lease.remote = r; void writeLease(dir, lease).catch(cleanupFailed('lease (remote run)')); } },
          onWarning: (reason) => emit({ type: 'warning', id: lease.id, name: lease.name, reason }),
          onNote: (reason) => emit({ type: 'note', id: lease.id, name: lease.name, reason }),
          awaitTemplate: false,
        }));
        facts.vm = vm;
        if (vm.requeue !== undefined) {
          lease.remote = null;
          lease.attempt += 1;
          emit({ type: 'requeued', id: lease.id, name: lease.name, reason: `${vm.requeue}; running it again (attempt ${lease.attempt})` });
          if (lease.attempt > s.maxAttempts) {
            throw new JrError('JR_E_INFRA', `the run failed for reasons outside the job ${lease.attempt - 1} times (max-attempts ${s.maxAttempts}); last: ${vm.requeue}`, { jobId: lease.id });
          }
          // Back to claimed: the loop's next turn prepares the work image again and starts the run.
          move('requeue'); move('claim');
          await writeLease(dir, lease);
          continue;
        }
        // Shutdown: a remote run goes on without us; the next start re-attaches to it, over the work
        // image it runs on (so that is kept: removing it would make the next start run the job again).
        if (vm.end === 'aborted' && !cancelled()) {
          if (lease.remote) keepWork = true;
          return await requeue(vm.reason);
        }
        lease.remote = null;
        emit({ type: 'booted', id: lease.id, name: lease.name, accel: vm.accel });
        facts.timings.boot = vm.bootMs;
        facts.timings.run = vm.bootMs === null ? null : vm.totalMs - vm.bootMs;
        verdict = cancelled() ?? verdictOf(vm);
        break;
      }
    } catch (e) {
      if (deps.signal.aborted) return await requeue('shutdown');
      const c = cancelled();
      if (c) { verdict = c; } else {
        const rejected = isJrError(e, 'JR_E_INPUT') || isJrError(e, 'JR_E_XZ');
        const interrupted = isJrError(e, 'JR_E_INTERRUPTED');
        verdict = { status: rejected ? 'rejected' : interrupted ? 'failed' : 'error', exitCode: null, reason: messageOf(e), publishWork: false };
      }
    }

    move(verbFor(verdict.status));
    await writeLease(dir, lease).catch(cleanupFailed('lease (verdict)'));
    const target = publishesToDone(verdict.status) ? s.done : s.failed;
    const ctx = { claim, target, preset: s.compressPreset, version: deps.version, step };
    let file: string;
    let status = verdict.status;
    try {
      facts.input.sha256 = await inputHash;
      file = await publishResult(ctx, verdict, facts);
    } catch (e) {
      // Disk full or I/O error while publishing: the partial result is gone, the input is still in
      // the claim. Keep the job's fate visible right away: an `error` status in failed/ with the
      // submitted input as evidence (a far smaller write); only if that fails too does the job
      // stay claimed for the next start.
      const reason = `could not publish the ${verdict.status} result to ${target}: ${messageOf(e)}; the submitted input is kept here instead (the run: ${verdict.reason})`;
      if (verdict.status !== 'error') move('error');
      status = 'error';
      try {
        file = await publishResult({ ...ctx, target: s.failed }, { status: 'error', exitCode: verdict.exitCode, reason, publishWork: false }, facts);
      } catch (e2) {
        return await stuck(`${reason}; publishing that to ${s.failed} failed too: ${messageOf(e2)}`);
      }
    }
    await dropClaim(dir);
    emit({ type: 'finished', id: lease.id, name: lease.name, status, reason: verdict.reason, path: file });
    return { kind: 'published', status, file };
  } finally {
    for (const c of cleanups.reverse()) await c.fn().catch(cleanupFailed(c.what));
  }

  async function requeue(reason: string): Promise<JobEnd> {
    move('requeue');
    lease.requeued = true;
    lease.qemuPid = null;
    await writeLease(dir, lease);
    emit({ type: 'requeued', id: lease.id, name: lease.name, reason });
    return { kind: 'requeued' };
  }

  /** Nothing could be published: keep the claim (input untouched) and say why in the lease. */
  async function stuck(reason: string): Promise<JobEnd> {
    move('stick');
    lease.lastError = reason;
    // Not an interrupted attempt: the next start retries it without counting towards max-attempts.
    lease.requeued = true;
    lease.qemuPid = null;
    await writeLease(dir, lease).catch(cleanupFailed('lease (stuck)'));
    emit({ type: 'stuck', id: lease.id, name: lease.name, reason });
    return { kind: 'stuck', reason };
  }
}
