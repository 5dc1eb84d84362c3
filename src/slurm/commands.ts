// The Slurm client commands (sbatch, squeue, scancel) as data in, facts out. Nothing else in the
// project runs them. Without slurmdbd there is no sacct: a finished job's end is read from
// `squeue --json -t all`, which keeps finished jobs for MinJobAge, plus the outcome file our own
// node-side command writes.
import { JrError, messageOf } from '../errors.js';
import { run } from '../proc.js';

/** A Slurm job's state as squeue reports it (JOB_STATE names, e.g. PENDING, RUNNING, COMPLETED). */
export interface SlurmJobInfo {
  jobId: number;
  state: string;
  /** squeue's raw wait status (768 for exit 3), null when not reported. */
  exitCode: number | null;
  node: string | null;
  reason: string;
}

/** States after which a Slurm job will not change again. */
const TERMINAL = new Set(['COMPLETED', 'FAILED', 'CANCELLED', 'TIMEOUT', 'NODE_FAIL', 'BOOT_FAIL', 'OUT_OF_MEMORY', 'PREEMPTED', 'DEADLINE', 'SPECIAL_EXIT', 'REVOKED']);

/** True when the job has ended in Slurm's eyes. */
export function isTerminal(state: string): boolean {
  return TERMINAL.has(state);
}

export interface SubmitRequest {
  /** The batch script's contents (starts with #!; given to sbatch on stdin, words already quoted). */
  script: string;
  jobName: string;
  /** Minutes of wall time Slurm allows (a backstop: our own watchdogs end the job first). */
  timeMinutes: number;
  memMiB: number;
  cpus: number;
  output: string;
  chdir: string;
  partition?: string;
  account?: string;
  /** Operator-given extra sbatch options, one argv word each. */
  extra: string[];
}

/** The sbatch argv for a request (pure; the script goes to sbatch's stdin). */
export function sbatchArgs(r: SubmitRequest): string[] {
  const a = ['--parsable', `--job-name=${r.jobName}`, `--time=${Math.max(1, Math.ceil(r.timeMinutes))}`,
    `--mem=${Math.max(1, Math.ceil(r.memMiB))}M`, `--cpus-per-task=${r.cpus}`, '--ntasks=1', '--nodes=1',
    // Our requeue decides about reruns (attempts are counted by the service), never Slurm's own.
    '--no-requeue', `--output=${r.output}`, `--chdir=${r.chdir}`, '--export=NONE'];
  if (r.partition) a.push(`--partition=${r.partition}`);
  if (r.account) a.push(`--account=${r.account}`);
  a.push(...r.extra);
  return a;
}

export interface SlurmEnv { conf?: string }

function env(e: SlurmEnv): Record<string, string> | undefined {
  return e.conf ? { SLURM_CONF: e.conf } : undefined;
}

/** Submit a batch job; returns its Slurm job id. */
export async function sbatch(r: SubmitRequest, e: SlurmEnv = {}): Promise<number> {
  const res = await run('sbatch', sbatchArgs(r), { input: r.script, env: env(e), reject: false, timeoutMs: 60_000 });
  const id = Number(res.stdout.trim().split(';')[0]);
  if (res.exitCode !== 0 || !Number.isInteger(id) || id <= 0) {
    throw new JrError('JR_E_SLURM', `sbatch failed (exit ${res.exitCode}): ${(res.stderr || res.stdout).trim().slice(-500)}`);
  }
  return id;
}

/** Cancel a job (signal TERM first, as Slurm does, then KILL after KillWait). Never throws. */
export async function scancel(jobId: number, e: SlurmEnv = {}): Promise<string | null> {
  try {
    const r = await run('scancel', [String(jobId)], { env: env(e), reject: false, timeoutMs: 30_000 });
    return r.exitCode === 0 ? null : (r.stderr || r.stdout).trim();
  } catch (err) {
    return messageOf(err);
  }
}

/** Facts about the given jobs; a job Slurm no longer knows is absent from the map. */
export async function squeue(jobIds: number[], e: SlurmEnv = {}): Promise<Map<number, SlurmJobInfo>> {
  const out = new Map<number, SlurmJobInfo>();
  if (jobIds.length === 0) return out;
  const r = await run('squeue', ['--json', '-t', 'all', '-j', jobIds.join(',')], { env: env(e), reject: false, timeoutMs: 30_000, maxBuffer: 64 << 20 });
  // squeue exits 1 with "Invalid job id specified" when none of the ids is known any more.
  if (r.exitCode !== 0) {
    if (/invalid job id/i.test(r.stderr)) return out;
    throw new JrError('JR_E_SLURM', `squeue failed (exit ${r.exitCode}): ${r.stderr.trim().slice(-500)}`);
  }
  for (const j of parseSqueueJson(r.stdout)) out.set(j.jobId, j);
  return out;
}

/** Parse `squeue --json` output (Slurm 22.05's shape). */
export function parseSqueueJson(text: string): SlurmJobInfo[] {
  let doc: unknown;
  try { doc = JSON.parse(text); } catch (err) { throw new JrError('JR_E_SLURM', `squeue --json printed something that is not JSON: ${messageOf(err)}`); }
  const jobs = (doc as { jobs?: unknown }).jobs;
  if (!Array.isArray(jobs)) throw new JrError('JR_E_SLURM', 'squeue --json printed no "jobs" list');
  return jobs.map((j: Record<string, unknown>) => {
    const state = Array.isArray(j.job_state) ? String(j.job_state[0] ?? '') : String(j.job_state ?? '');
    const exit = typeof j.exit_code === 'number' ? j.exit_code : null;
    const nodes = typeof j.nodes === 'string' && j.nodes !== '' ? j.nodes : null;
    return { jobId: Number(j.job_id), state, exitCode: exit, node: nodes, reason: String(j.state_reason ?? '') };
  });
}

/** Single-quote a word for /bin/sh. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
