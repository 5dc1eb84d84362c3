// Claims: a queued file is moved by one atomic rename into queue/.running/<id>/, a directory named
// by the service; the lease beside it records who runs it and how often it was tried. Start-up
// recovery turns stale claims (a crashed service) back into runnable jobs.
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rename, rm, rmdir, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { entryExists, readJson, writeFileAtomic } from '../fsutil.js';
import { syncShared } from '../fsync-shared.js';
import { resultName, type Submission } from './names.js';
import type { JobState } from './record.js';

export interface Lease {
  id: string;
  /** Result name (from the submitted file name). */
  name: string;
  /** The file name as submitted (may be hostile: shown, never executed). */
  submitted: string;
  base: string | null;
  compressed: boolean;
  /** 1 for the first run; +1 for every run a crashed service left unfinished. */
  attempt: number;
  servicePid: number;
  qemuPid: number | null;
  submittedAt: string;
  claimedAt: string;
  startedAt: string | null;
  /** Where the job is; moved only through job/state.ts's transition table. */
  state: JobState;
  /** Set when a shutdown stopped the run on purpose: that run does not count as an attempt. */
  requeued?: boolean;
  /** Why the last run could not be published (the claim was kept for the next start). */
  lastError?: string;
  /** The run was shipped elsewhere (--backend slurm): the next start re-attaches to it, never reruns it. */
  remote?: RemoteRun | null;
}

/** A run handed to a batch engine: its job id there and, once known, the node it runs on. */
export interface RemoteRun { backend: 'slurm'; jobId: number; node: string | null }

export interface Claim {
  dir: string;
  lease: Lease;
  /** The submitted file, untouched: reruns and rejections start from it. */
  input: string;
}

export const RUNNING = '.running';

/** Directory of a claim; all of a job's files live there until it is published. */
export function claimPaths(dir: string): { lease: string; work: string; log: string } {
  return { lease: path.join(dir, 'lease.json'), work: path.join(dir, 'work.img'), log: path.join(dir, 'console.log') };
}

/** Input file name inside a claim directory. */
export function inputName(compressed: boolean): string {
  return compressed ? 'input.img.xz' : 'input.img';
}

/**
 * The lease in claim directory `dir`, or null when there is none or it cannot be parsed: claim()
 * writes a fresh claim's lease in place (nothing may act on it before its barrier), so a reader
 * that lists claims can find it empty or half-written.
 */
export async function readLease(dir: string): Promise<Lease | null> {
  const v = await readJson(claimPaths(dir).lease) as Lease | null;
  return v !== null && typeof v === 'object' && typeof v.id === 'string' ? v : null;
}

export async function writeLease(dir: string, lease: Lease): Promise<void> {
  await writeFileAtomic(claimPaths(dir).lease, JSON.stringify(lease, null, 2) + '\n');
}

/**
 * Claim queue/<file>: write the lease first, then rename the entry in, whatever it is (rename
 * never follows links or opens anything); the caller screens the claimed entry (spool/reject.ts)
 * where the submitter can no longer swap it. A crash between the two leaves a lease without input,
 * which recovery deletes (the file is still queued). Returns null when the file vanished (claimed
 * or removed by someone else). `submitted` overrides the shown name (undecodable names).
 */
export async function claim(queueDir: string, sub: Submission, mtime: Date, submitted?: string, id: string = newJobId(), from?: string): Promise<Claim | null> {
  const dir = path.join(queueDir, RUNNING, id);
  await mkdir(dir, { mode: 0o755 });
  const lease: Lease = {
    id, name: sub.name, submitted: submitted ?? sub.file, base: sub.base, compressed: sub.compressed, attempt: 1,
    servicePid: process.pid, qemuPid: null, submittedAt: mtime.toISOString(), claimedAt: new Date().toISOString(), startedAt: null,
    state: 'claimed', // queued -> claimed: the one move the spool makes itself
  };
  const input = path.join(dir, inputName(sub.compressed));
  try {
    // A fresh, private directory: nothing reads the lease before the barrier below, and after a
    // crash a torn lease without an input beside it is an incomplete claim that recovery removes.
    // may fail (disk full): then no claim directory may stay behind
    await writeFile(claimPaths(dir).lease, JSON.stringify(lease, null, 2) + '\n', { mode: 0o644 });
    // The lease must be on disk before the input can be found beside it (recovery drops a claim
    // whose lease it cannot read). One syncfs shared with every claim in flight (fsync-shared.ts).
    await syncShared(queueDir);
    await rename(from ?? path.join(queueDir, sub.file), input);
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  // The move is durable before anyone acts on the claim (shared the same way).
  await syncShared(queueDir);
  return { dir, lease, input };
}

/** A fresh job id: time-ordered, unguessable (an upload gets it at upload time, see service/uploads.ts). */
export function newJobId(): string {
  return `${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
}

/** `n` fresh job ids from one read of the random source (a flood's bulk rejection names thousands). */
export function newJobIds(n: number): string[] {
  const t = Date.now().toString(36);
  const r = randomBytes(4 * n).toString('hex');
  const ids = new Set<string>();
  for (let i = 0; i < n; i++) ids.add(`${t}-${r.slice(8 * i, 8 * i + 8)}`);
  // Two equal draws in one batch (rare): top up, so every id is unique within the batch.
  while (ids.size < n) ids.add(newJobId());
  return [...ids];
}

/** True when `s` has the shape of a job id (ids reach paths: nothing else may pass). */
export function isJobId(s: string): boolean {
  return /^[0-9a-z]{6,12}-[0-9a-f]{8}$/.test(s);
}

export interface StaleClaim {
  /** null: no lease or no input (a claim interrupted half-way; its file is still queued). */
  claim: Claim | null;
  dir: string;
}

/**
 * List claims in queue/.running (at start-up, all of them are stale: we hold the spool lock).
 * An input of any type counts (it is screened again before it runs): an interrupted claim of a
 * directory must be moved aside by the screen, not deleted with its claim.
 */
export async function listClaims(queueDir: string): Promise<StaleClaim[]> {
  const root = path.join(queueDir, RUNNING);
  const out: StaleClaim[] = [];
  for (const id of await readdir(root).catch(() => [] as string[])) {
    // Dot-names are the service's own working directories (.held: bulk rejection), never claims.
    if (id.startsWith('.')) continue;
    const dir = path.join(root, id);
    const lease = await readLease(dir);
    if (!lease) { out.push({ claim: null, dir }); continue; }
    // The lease is ours, but it sits on disk: never let a name in it steer where results go.
    lease.name = resultName(lease.name);
    // A lease written before leases kept their state: what it can be told from.
    lease.state ??= lease.startedAt !== null ? 'running' : 'claimed';
    const input = path.join(dir, inputName(lease.compressed));
    const has = await entryExists(input);
    out.push({ claim: has ? { dir, lease, input } : null, dir });
  }
  return out;
}

/** Remove an empty or finished claim directory. */
export async function dropClaim(dir: string): Promise<void> {
  // (house-intake) The files a claim can hold are known: unlink them and the directory (a flood
  // drops thousands of claims; rm -r would lstat and list each first). Anything else: rm -r.
  const { lease, work, log } = claimPaths(dir);
  const known = [lease, work, log, path.join(dir, inputName(false)), path.join(dir, inputName(true))];
  const odd = (e: NodeJS.ErrnoException): boolean => e.code !== 'ENOENT';
  const failed = await Promise.all(known.map((f) => unlink(f).then(() => false, odd)));
  const gone = !failed.some(Boolean) && (await rmdir(dir).then(() => true, (e: NodeJS.ErrnoException) => !odd(e)));
  if (!gone) await rm(dir, { recursive: true, force: true });
}
