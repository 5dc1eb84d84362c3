// The spool as one object: its directories (queue/, queue/.running/, done/, failed/), its lock,
// the checks and sweeps start-up needs, and the listings `jobrunner status` and the demo read.
// Everything that knows the spool's layout on disk is here or in claim.ts (one claim's files).
import { createHash } from 'node:crypto';
import { lstat, mkdir, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { readJson } from '../fsutil.js';
import { JrError } from '../errors.js';
import { lockHolder, tryLock, unlock } from '../lock.js';
import { argvOf } from '../procfs.js';
import { listClaims, readLease, RUNNING, type Lease, type StaleClaim } from './claim.js';
import { parseSubmission } from './names.js';
import { sweepTemps } from './publish.js';
import type { JobStatus } from './record.js';

/** The spool lock's name in queue/. */
export const LOCK = '.jobrunner.lock';

/**
 * Prefix of qemu scratch directories under the system temp dir: per spool (a short hash of the
 * queue path), then per job. Start-up, holding the spool lock, removes every one of its spool.
 */
export function vmTmpPrefix(queueDir: string, id = ''): string {
  const spool = createHash('sha256').update(path.resolve(queueDir)).digest('hex').slice(0, 12);
  return `jobrunner-vm-${spool}-${id}`;
}

export interface QueuedEntry { file: string; bytes: number; since: string }
export interface ClaimEntry { id: string; dir: string; lease: Lease }
export interface ResultEntry { dir: string; status: JobStatus }

/** One spool: queue/ (with .running/ and the lock), done/ and failed/. */
export class Spool {
  readonly queue: string;
  readonly done: string;
  readonly failed: string;

  constructor(dirs: { queue: string; done: string; failed: string }) {
    this.queue = dirs.queue;
    this.done = dirs.done;
    this.failed = dirs.failed;
  }

  /** queue/.running: one directory per claimed job. */
  get running(): string { return path.join(this.queue, RUNNING); }

  get lockFile(): string { return path.join(this.queue, LOCK); }

  /** Create the directories (queue/.running mode 0755: only we write there). */
  async create(): Promise<void> {
    for (const d of [this.queue, this.done, this.failed]) await mkdir(d, { recursive: true });
    await mkdir(this.running, { mode: 0o755 }).catch((e: NodeJS.ErrnoException) => { if (e.code !== 'EEXIST') throw e; });
  }

  /**
   * One service per spool. The lock lives in queue/, where submitters can create dotfiles: it is
   * only read when it is a regular file, and (re)created with O_EXCL|O_NOFOLLOW so a planted
   * symlink can never make us write through it.
   */
  async lock(): Promise<void> {
    const file = this.lockFile;
    const other = await lockHolder(file);
    if (other && other.pid !== process.pid && (await argvOf(other.pid)).join(' ').includes('jobrunner')) {
      throw new JrError('JR_E_CONFIG', `another jobrunner (pid ${other.pid}) is serving ${this.queue}`);
    }
    if (await lstat(file).catch(() => null)) await rm(file, { recursive: true, force: true });
    if (!(await tryLock(file))) throw new JrError('JR_E_CONFIG', `another jobrunner is starting on ${this.queue} (${file} appeared meanwhile)`);
  }

  async unlock(): Promise<void> { await unlock(this.lockFile); }

  /**
   * queue/.running must be ours: a submitter could pre-create it (as a directory they can write,
   * or a symlink), and everything the claim screening relies on assumes only we write there.
   */
  async checkRunningDir(): Promise<void> {
    const dir = this.running;
    const st = await lstat(dir);
    const uid = process.getuid?.() ?? st.uid;
    if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o022) !== 0) {
      throw new JrError('JR_E_CONFIG', `${dir} must be a directory owned by this service and writable only by it (found ${st.isDirectory() ? `mode ${(st.mode & 0o777).toString(8)}, owner ${st.uid}` : 'something else'}); move it away and restart`);
    }
  }

  /** Names in queue/ that are submissions (*.img, *.img.xz, not dotfiles). */
  async queuedNames(): Promise<string[]> {
    return (await readdir(this.queue).catch(() => [] as string[])).filter((f) => parseSubmission(f) !== null);
  }

  /** Submissions waiting in queue/, with size and submission time. */
  async queued(): Promise<QueuedEntry[]> {
    const out: QueuedEntry[] = [];
    for (const f of await this.queuedNames()) {
      const st = await lstat(path.join(this.queue, f)).catch(() => null);
      if (st) out.push({ file: f, bytes: st.size, since: st.mtime.toISOString() });
    }
    return out;
  }

  /** Every claim, for recovery (at start-up, holding the lock, all of them are stale). */
  claims(): Promise<StaleClaim[]> { return listClaims(this.queue); }

  /** The claims whose lease can be read, as they are (read-only: for `jobrunner status`). */
  async leases(): Promise<ClaimEntry[]> {
    const out: ClaimEntry[] = [];
    for (const id of await readdir(this.running).catch(() => [] as string[])) {
      const dir = path.join(this.running, id);
      const lease = await readLease(dir);
      if (lease) out.push({ id, dir, lease });
    }
    return out;
  }

  /** Published results (NAME.json in done/ and failed/), newest first. */
  async results(): Promise<ResultEntry[]> {
    const out: ResultEntry[] = [];
    for (const dir of [this.done, this.failed]) {
      for (const f of await readdir(dir).catch(() => [] as string[])) {
        if (!f.endsWith('.json') || f.startsWith('.')) continue;
        const status = await readJson(path.join(dir, f)) as JobStatus | null;
        if (status?.finishedAt) out.push({ dir, status });
      }
    }
    return out.sort((a, b) => b.status.finishedAt.localeCompare(a.status.finishedAt));
  }

  /** Remove temp files a previous run left in done/ and failed/; per directory, how many. */
  async sweepTemps(): Promise<Array<{ dir: string; files: number }>> {
    const out: Array<{ dir: string; files: number }> = [];
    for (const dir of [this.done, this.failed]) out.push({ dir, files: await sweepTemps(dir) });
    return out;
  }

  /** Remove every qemu scratch directory a previous run of this spool's service left behind. */
  async sweepScratch(): Promise<number> {
    const prefix = vmTmpPrefix(this.queue);
    let n = 0;
    for (const f of await readdir(os.tmpdir()).catch(() => [] as string[])) {
      if (f.startsWith(prefix)) { await rm(path.join(os.tmpdir(), f), { recursive: true, force: true }); n++; }
    }
    return n;
  }
}
