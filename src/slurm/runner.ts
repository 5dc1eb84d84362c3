// The Slurm backend's service side: the VM run of a claimed job becomes a Slurm job (sbatch of
// `jobrunner node-run CLAIM_DIR`), waited for by polling squeue and the claim's outcome file.
// Our watchdogs still rule (the wall clock, cancel); Slurm's --time is only a backstop. Slurm's
// ends are mapped onto ours, and an end without our outcome file is an infrastructure fault
// (requeue), never a success: a broken slurmd reports COMPLETED 0:0 for jobs it never ran.
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from '../config.js';
import { JrError } from '../errors.js';
import type { RunOutcome, RunRequest, Runner } from '../job/runner.js';
import type { VmRunOutcome, VmRunSettings } from '../job/vm-run.js';
import { isTerminal, sbatch, scancel, shellQuote, squeue, type SlurmEnv, type SlurmJobInfo } from './commands.js';
import { readOutcome, writeRequest, type NodeOutcome } from './protocol.js';

export interface SlurmSettings {
  slurmPartition: string;
  slurmAccount: string;
  slurmArgs: string;
  slurmPoll: number;
}

export interface SlurmRunRequest {
  jobId: string;
  claimDir: string;
  baseImageDir: string;
  baseImage: string;
  settings: VmRunSettings & SlurmSettings & { runAs: string };
  /** deps (issue 11): the derived base layers the job boots on (paths the nodes share). */
  rootLayers?: string[];
  /** A Slurm job already submitted for this claim (re-attach after a restart). */
  attachTo: number | null;
  /** Called with the Slurm job id as soon as sbatch returns (the lease records it). */
  onSubmit: (slurmJobId: number) => void;
  /** Called when Slurm reports where the job runs. */
  onNode?: (node: string) => void;
  /** Shutdown: stop waiting, leave the Slurm job running (the next start re-attaches). */
  signal: AbortSignal;
  /** Cancel: end the Slurm job (scancel) and report `aborted`. */
  cancel?: AbortSignal;
  env?: SlurmEnv;
  /** The jobrunner executable nodes run (default: this checkout's). */
  jobrunner?: string;
}

export type SlurmEnd =
  /** The node ran the VM (or our watchdog ended it): a normal outcome. */
  | { kind: 'outcome'; outcome: VmRunOutcome; node: string | null; slurmJobId: number }
  /** Not the job's fault (node failure, job never ran, Slurm lost it): run it again. */
  | { kind: 'infra'; reason: string; node: string | null; slurmJobId: number | null }
  /** We stopped waiting (shutdown); the Slurm job may still be running. */
  | { kind: 'detached'; slurmJobId: number };

/** Extra seconds Slurm's --time gives beyond our own limits: our watchdogs act first. */
const BACKSTOP_S = 120;
/** qemu's own memory beyond the guest's (TCG translation cache, device state, ours). */
const QEMU_OVERHEAD_MIB = 384;
/** An outcome file can lag the job's end on a shared filesystem: look again for this long. */
const OUTCOME_LAG_MS = 5000;

/** The sbatch job name: the job id, so `squeue` shows which job a Slurm job is. */
export function slurmJobName(jobId: string): string {
  return `jobrunner-${jobId}`;
}

/** Split --slurm-args into argv words (whitespace-separated; no shell, no quoting). */
export function splitArgs(s: string): string[] {
  return s.split(/\s+/).filter((w) => w !== '');
}

function batchScript(jobrunner: string, claimDir: string): string {
  // --export=NONE: the node gets a clean environment, not the service's.
  return `#!/bin/sh\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nexport PATH\nexec ${shellQuote(jobrunner)} node-run ${shellQuote(claimDir)}\n`;
}

/** Map a Slurm end that came without our outcome file onto ours. */
export function mapSlurmEnd(info: SlurmJobInfo, cancelledByUs: boolean): { kind: 'infra'; reason: string } | { kind: 'outcome'; end: VmRunOutcome['end']; reason: string } {
  const s = info.state;
  const at = info.node ? ` on ${info.node}` : '';
  switch (s) {
    case 'TIMEOUT': return { kind: 'outcome', end: 'timeout', reason: `Slurm's time limit (the --time backstop) ended Slurm job ${info.jobId}${at}` };
    case 'CANCELLED': return cancelledByUs
      ? { kind: 'outcome', end: 'aborted', reason: `cancelled (Slurm job ${info.jobId}${at})` }
      : { kind: 'outcome', end: 'killed', reason: `Slurm job ${info.jobId}${at} was cancelled in Slurm by someone else (scancel or an administrator)` };
    case 'OUT_OF_MEMORY': return { kind: 'outcome', end: 'killed', reason: `Slurm killed job ${info.jobId}${at}: out of memory (raise --memory or the node's limits)` };
    default: return { kind: 'infra', reason: `Slurm job ${info.jobId}${at} ended ${s}${info.reason && info.reason !== 'None' ? ` (${info.reason})` : ''} without running our node command to its end` };
  }
}

/** Submit (or re-attach to) the Slurm job of one claim and wait for its end. */
export async function runOnSlurm(req: SlurmRunRequest): Promise<SlurmEnd> {
  const s = req.settings;
  const env = req.env ?? {};
  let slurmJobId = req.attachTo;
  if (slurmJobId !== null) {
    const q = await squeueSurely([slurmJobId], env, req);
    if (q === null) return { kind: 'detached', slurmJobId };
    if (!q.get(slurmJobId)) {
      const done = await readOutcome(req.claimDir, req.jobId, slurmJobId);
      if (done) return fromOutcome(done, slurmJobId);
      return { kind: 'infra', reason: `Slurm no longer knows job ${slurmJobId} and it left no outcome`, node: null, slurmJobId };
    }
  } else {
    await writeRequest(req.claimDir, {
      protocol: 1, jobId: req.jobId, baseImageDir: req.baseImageDir, baseImage: req.baseImage, settings: pickVmSettings(s),
      ...(req.rootLayers?.length ? { rootLayers: req.rootLayers } : {}),
    });
    const limitS = (s.timeout + s.bootTimeout + 2 * s.killGrace) / 1000 + BACKSTOP_S;
    slurmJobId = await sbatch({
      script: batchScript(req.jobrunner ?? path.join(REPO_ROOT, 'jobrunner'), req.claimDir),
      jobName: slurmJobName(req.jobId), timeMinutes: limitS / 60,
      memMiB: s.memory / (1024 * 1024) + QEMU_OVERHEAD_MIB, cpus: s.cpus,
      output: path.join(req.claimDir, 'slurm.out'), chdir: os.tmpdir(),
      partition: s.slurmPartition || undefined, account: s.slurmAccount || undefined, extra: splitArgs(s.slurmArgs),
    }, env);
    req.onSubmit(slurmJobId);
  }
  const id = slurmJobId;
  let cancelledByUs = false;
  let runningSince: number | null = null;
  let node: string | null = null;
  let endedAt: number | null = null;
  let last: SlurmJobInfo | undefined;
  // Our wall clock counts from when Slurm started the job (time pending in Slurm's queue is
  // capacity, not the job's), with room for the node's own watchdogs to act first.
  const ourLimit = s.timeout + s.bootTimeout + 2 * s.killGrace + 30_000;
  for (;;) {
    // A cancel (its signal may also stop `signal`) ends the Slurm job; a shutdown alone detaches.
    if (req.cancel?.aborted && !cancelledByUs) { cancelledByUs = true; await scancel(id, env); }
    if (req.signal.aborted && !req.cancel?.aborted) return { kind: 'detached', slurmJobId: id };
    // A failing squeue (controller restarting, overloaded) says nothing about the job: ask again.
    // Reading it as "gone" would requeue a job that is still running and run it twice.
    let q: Map<number, SlurmJobInfo>;
    try { q = await squeue([id], env); } catch { await sleep(Math.max(s.slurmPoll, 2000), req.signal, req.cancel); continue; }
    const info = q.get(id);
    if (info) last = info;
    if (info?.node && info.node !== node) { node = info.node; req.onNode?.(node); }
    if (info?.state === 'RUNNING' && runningSince === null) runningSince = Date.now();
    if (runningSince !== null && !cancelledByUs && Date.now() - runningSince > ourLimit) {
      cancelledByUs = true;
      await scancel(id, env);
      const out = await waitForEnd(id, env, req);
      const o = await readOutcome(req.claimDir, req.jobId, id);
      const why = `the node did not end the job within its limits; jobrunner cancelled Slurm job ${id}`;
      // node-run ends with `aborted` when our scancel's TERM reaches it: that is our timeout.
      if (o && (o.outcome.end === 'aborted' || o.outcome.end === 'killed')) return { kind: 'outcome', outcome: { ...o.outcome, end: 'timeout', reason: why }, node: o.node, slurmJobId: id };
      if (o) return fromOutcome(o, id);
      return { kind: 'outcome', outcome: synthetic('timeout', `the node did not end the job within its limits; jobrunner cancelled Slurm job ${id}`, ourLimit), node: out?.node ?? node, slurmJobId: id };
    }
    const ended = info === undefined || isTerminal(info.state);
    if (ended) {
      endedAt ??= Date.now();
      const o = await readOutcome(req.claimDir, req.jobId, id);
      if (o) {
        // Slurm's own --time backstop stopped node-run: a timeout, not someone else's cancel.
        if ((info ?? last)?.state === 'TIMEOUT' && (o.outcome.end === 'aborted' || o.outcome.end === 'killed')) {
          return { kind: 'outcome', outcome: { ...o.outcome, end: 'timeout', reason: `Slurm's time limit (the --time backstop) ended Slurm job ${id} on ${o.node}` }, node: o.node, slurmJobId: id };
        }
        if (cancelledByUs && o.outcome.end === 'aborted') return { kind: 'outcome', outcome: { ...o.outcome, reason: `cancelled (Slurm job ${id})` }, node: o.node, slurmJobId: id };
        // node-run stopped by a TERM we did not send: someone cancelled the Slurm job.
        if (o.outcome.end === 'aborted') return { kind: 'outcome', outcome: { ...o.outcome, end: 'killed', reason: `Slurm job ${id} on ${o.node} was cancelled in Slurm by someone else (scancel or an administrator)` }, node: o.node, slurmJobId: id };
        return fromOutcome(o, id);
      }
      if (Date.now() - endedAt >= OUTCOME_LAG_MS) {
        if (!info && !last) return { kind: 'infra', reason: `Slurm no longer knows job ${id} and it left no outcome`, node, slurmJobId: id };
        const m = mapSlurmEnd(info ?? last!, cancelledByUs);
        if (m.kind === 'infra') return { kind: 'infra', reason: m.reason, node, slurmJobId: id };
        return { kind: 'outcome', outcome: synthetic(m.end, m.reason, runningSince === null ? 0 : Date.now() - runningSince), node, slurmJobId: id };
      }
    }
    await sleep(s.slurmPoll, req.signal, req.cancel);
  }
}

/** squeue, retried until it answers; null when `signal` (shutdown) stops us first. */
async function squeueSurely(ids: number[], env: SlurmEnv, req: SlurmRunRequest): Promise<Map<number, SlurmJobInfo> | null> {
  for (;;) {
    if (req.signal.aborted) return null;
    try { return await squeue(ids, env); } catch { await sleep(Math.max(req.settings.slurmPoll, 2000), req.signal); }
  }
}

async function waitForEnd(id: number, env: SlurmEnv, req: SlurmRunRequest): Promise<SlurmJobInfo | undefined> {
  const until = Date.now() + 60_000;
  let last: SlurmJobInfo | undefined;
  while (Date.now() < until) {
    const info = (await squeue([id], env).catch(() => undefined))?.get(id);
    if (info) last = info;
    if (!info || isTerminal(info.state)) return last;
    await sleep(500, req.signal);
  }
  return last;
}

function fromOutcome(o: NodeOutcome, id: number): SlurmEnd {
  return { kind: 'outcome', outcome: o.outcome, node: o.node, slurmJobId: id };
}

function synthetic(end: VmRunOutcome['end'], reason: string, totalMs: number): VmRunOutcome {
  return {
    end, exitCode: null, clean: false, reason, bootMs: null, totalMs, consoleBytes: 0, consoleTruncated: false, lastLine: '',
    sawOutput: false, qemuExitCode: null, qemuSignal: null, stderrTail: '', argv: [], accel: 'tcg', accelReason: 'ran on a Slurm node',
  };
}

function pickVmSettings(s: SlurmRunRequest['settings']): VmRunSettings & { runAs: string } {
  const { qemu, accel, memory, cpus, network, init, timeout, bootTimeout, killGrace, logCap, sandbox, runAs } = s;
  return { qemu, accel, memory, cpus, network, init, timeout, bootTimeout, killGrace, logCap, sandbox, runAs };
}

function sleep(ms: number, ...signals: Array<AbortSignal | undefined>): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    const live = signals.filter((x): x is AbortSignal => x !== undefined);
    function done(): void { clearTimeout(t); for (const x of live) x.removeEventListener('abort', done); resolve(); }
    for (const x of live) x.addEventListener('abort', done, { once: true });
  });
}

/**
 * The Slurm Runner: ships each prepared job to a node (sbatch of node-run) and waits for it. The
 * lifecycle gives it the claim (RunRequest.job); a remote run named in the lease is re-attached to.
 */
export function slurmRunner(settings: SlurmRunRequest['settings'] & { baseImageDir: string }, env?: SlurmEnv): Runner {
  return {
    kind: 'slurm',
    async run(req: RunRequest): Promise<RunOutcome> {
      if (!req.job) throw new JrError('JR_E_INTERNAL', 'the Slurm runner needs the claim (RunRequest.job)');
      const job = req.job;
      let node: string | null = job.remote?.node ?? null;
      let slurmJobId: number | null = job.remote?.jobId ?? null;
      const end = await runOnSlurm({
        // The request's settings: a job manifest's memory, cpus and timeout apply on Slurm too.
        jobId: job.id, claimDir: job.dir, baseImageDir: settings.baseImageDir, baseImage: req.base.name, settings: { ...settings, ...req.settings }, rootLayers: req.rootLayers,
        attachTo: job.remote?.jobId ?? null, signal: req.signal, cancel: req.cancel, env,
        onSubmit: (id) => { slurmJobId = id; job.onRemote({ backend: 'slurm', jobId: id, node: null }); },
        onNode: (n) => { node = n; if (slurmJobId !== null) job.onRemote({ backend: 'slurm', jobId: slurmJobId, node: n }); },
      });
      const runner = (n: string | null, id: number | null): RunOutcome['runner'] => ({ backend: 'slurm', node: n, slurmJobId: id });
      switch (end.kind) {
        case 'outcome': return { ...end.outcome, runner: runner(end.node ?? node, end.slurmJobId) };
        case 'infra': return { ...synthetic('crashed', end.reason, 0), requeue: end.reason, runner: runner(end.node ?? node, end.slurmJobId ?? slurmJobId) };
        case 'detached': return { ...synthetic('aborted', `the service stopped; Slurm job ${end.slurmJobId} goes on and is re-attached at the next start`, 0), runner: runner(node, end.slurmJobId) };
      }
    },
  };
}
