// NAME.json: the status record published beside every result, and its one builder (used for a
// job that ran, publish-result.ts, and for an entry refused at claim, reject.ts). It lives in the
// spool because it is the spool's output format: the job layer fills it, the spool writes it.

/** Final statuses, as written in NAME.json. */
export type FinalStatus = 'succeeded' | 'failed' | 'timeout' | 'boot-failed' | 'rejected' | 'error' | 'cancelled';

/**
 * Where a job is, as kept in its lease (job/state.ts moves it, through its transition table).
 * `stuck`: a final status that could not be published; the claim waits for the next start.
 */
export type JobState = 'queued' | 'claimed' | 'running' | FinalStatus | 'requeued' | 'stuck';

/** Which file a result was published as (JobStatus.output.form). */
export type ResultForm = 'image' | 'output';

/** The published result's file name for `publishedAs` in this form. */
export const resultFileName = (publishedAs: string, form: ResultForm = 'image'): string =>
  `${publishedAs}.${form === 'output' ? 'output.tar.xz' : 'img.xz'}`;

export interface JobStatus {
  name: string;
  id: string;
  status: FinalStatus;
  exitCode: number | null;
  reason: string;
  submitted: string;
  publishedAs: string;
  attempt: number;
  submittedAt: string;
  startedAt: string | null;
  finishedAt: string;
  durations: { wait: number | null; boot: number | null; run: number | null; compress: number | null };
  input: { bytes: number | null; sha256: string | null };
  /**
   * The published result: its size, sha256 and the xz preset it was compressed with. `form` says
   * which file it is: 'image' (NAME.img.xz; records without `form` are images) or 'output'
   * (NAME.output.tar.xz, the job's /job/output, when its manifest asked for "publish": "output").
   */
  output: { bytes: number; sha256: string; preset: number; form?: ResultForm } | null;
  baseImage: { name: string; sha256: string } | null;
  accel: string | null;
  console: { bytes: number; truncated: boolean; lastLine: string } | null;
  /** Where the run happened: the local backend, or a Slurm job on a node. */
  runner?: { backend: 'local' | 'slurm'; node: string | null; slurmJobId: number | null };
  /** How the VM started (docs/START.md): restored from a template or booted cold, and the restore's timings. */
  start?: StartRecord | null;
  version: string;
  /** deps (issue 11): the manifest's packages as resolved, the derived layer, time spent or cache hit. */
  deps?: DepsRecord | null;
}

/** The deps part of a job's status record (a buildinfo for the run; issue 11, src/deps). */
export interface DepsRecord {
  /** What was asked (the manifest's relations; conflicts prefixed '!') and what apt resolved (name:arch=version). */
  requested: string[];
  resolved: string[];
  /** The layer's key, sha256 and apparent size (bytes: the file's length; sparse ext4 layers take less on disk). */
  layer: { key: string; sha256: string; bytes: number } | null;
  /** True when the derived layer came from the cache (no install VM ran). */
  cacheHit: boolean;
  downloaded: { debs: number; bytes: number };
  /** Seconds spent on each phase (install null on a cache hit). */
  durations: { resolve: number; fetch: number; install: number | null };
}

/**
 * The start of a job's VM: `requested` and `used` differ when a restore fell back to a cold boot
 * (`fallback` says why); timings are ms from qemu's spawn (state loaded, job disk attached, job
 * started) plus the template lookup, null for a cold boot.
 */
export interface StartRecord {
  requested: 'restore' | 'cold';
  used: 'restore' | 'cold';
  template: string | null;
  built: boolean;
  fallback: string | null;
  timings: { templateMs: number; loadMs: number | null; diskMs: number | null; jobStartMs: number | null } | null;
}

/** What is known about a job when its record is written; whatever did not happen stays null. */
export interface RecordFacts {
  status: FinalStatus;
  exitCode: number | null;
  reason: string;
  version: string;
  /** When the run started (null: it never ran). */
  startedAt: string | null;
  input: JobStatus['input'];
  timings?: { boot: number | null; run: number | null; compress: number | null };
  output?: JobStatus['output'];
  baseImage?: JobStatus['baseImage'];
  accel?: string | null;
  console?: JobStatus['console'];
  runner?: JobStatus['runner'];
  deps?: DepsRecord | null;
  start?: StartRecord | null;
}

/** Seconds between two ISO timestamps / ms values, rounded to 0.1 s; null when unknown. */
export function seconds(ms: number | null | undefined): number | null {
  return ms === null || ms === undefined ? null : Math.round(ms / 100) / 10;
}

/** What the record says of the job itself (a Lease has it all). */
export interface RecordSubject { name: string; id: string; submitted: string; attempt: number; submittedAt: string }

/** The NAME.json record of `lease`, published as `publishedAs`, finished at `finishedAt`. */
export function statusRecord(lease: RecordSubject, publishedAs: string, f: RecordFacts, finishedAt: string): JobStatus {
  const t = f.timings ?? { boot: null, run: null, compress: null };
  return {
    name: lease.name, id: lease.id, status: f.status, exitCode: f.exitCode, reason: f.reason,
    submitted: lease.submitted, publishedAs, attempt: lease.attempt,
    submittedAt: lease.submittedAt, startedAt: f.startedAt, finishedAt,
    durations: {
      wait: f.startedAt === null ? null : seconds(Date.parse(f.startedAt) - Date.parse(lease.submittedAt)),
      boot: seconds(t.boot), run: seconds(t.run), compress: seconds(t.compress),
    },
    input: f.input,
    output: f.output ?? null,
    baseImage: f.baseImage ?? null,
    accel: f.accel ?? null,
    console: f.console ?? null,
    ...(f.runner ? { runner: f.runner } : {}),
    start: f.start ?? null,
    version: f.version,
    ...(f.deps !== undefined ? { deps: f.deps } : {}),
  };
}
