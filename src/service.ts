// The service: owns start-up (spool lock, recovery of stale claims, orphan qemu, temp sweep), the
// watcher, and drain on stop. Emits everything through the one logger; prints nothing itself.
import { constants } from 'node:fs';
import { lstat, mkdir, open, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Settings } from './config.js';
import { JrError, messageOf } from './errors.js';
import { pidAlive } from './fsutil.js';
import { loadBaseImage } from './image/base.js';
import { runJob, vmTmpPrefix, type JobEvent } from './job/lifecycle.js';
import { transition } from './job/state.js';
import { AccelState } from './job/vm-run.js';
import type { Logger } from './log.js';
import { Scheduler } from './scheduler.js';
import { claim, dropClaim, listClaims, RUNNING, writeLease, type Claim } from './spool/claim.js';
import { parseSubmission } from './spool/names.js';
import { screenClaimed } from './spool/reject.js';
import { sweepTemps } from './spool/publish.js';
import { QueueWatcher, type Candidate } from './spool/watcher.js';
import { findOrphanQemu } from './vm/orphans.js';

export interface ServiceOptions {
  settings: Settings;
  logger: Logger;
  version: string;
  runAs?: { uid: number; gid: number };
}

const LOCK = '.jobrunner.lock';

/** The job service. `start()` then `done` resolves when it has stopped (after `stop()` or --once). */
export class Service {
  private readonly s: Settings;
  private readonly log: Logger;
  private readonly scheduler: Scheduler;
  private readonly accel: AccelState;
  private readonly abort = new AbortController();
  private watcher: QueueWatcher | null = null;
  private stopping = false;
  private locked = false;
  private onceTimer: NodeJS.Timeout | null = null;
  private resolveDone!: () => void;
  /** Resolves once the service has fully stopped. */
  readonly done: Promise<void> = new Promise((r) => { this.resolveDone = r; });
  private readonly claiming = new Set<string>();

  constructor(private readonly o: ServiceOptions) {
    this.s = o.settings;
    this.log = o.logger;
    this.scheduler = new Scheduler(o.settings.concurrency);
    this.accel = new AccelState(o.settings.accel);
  }

  async start(): Promise<void> {
    const s = this.s;
    for (const d of [s.queue, s.done, s.failed]) await mkdir(d, { recursive: true });
    await this.lock();
    await mkdir(path.join(s.queue, RUNNING), { mode: 0o755 }).catch((e: NodeJS.ErrnoException) => { if (e.code !== 'EEXIST') throw e; });
    await this.checkRunningDir();
    const base = await loadBaseImage(s.baseImageDir, s.baseImage);
    const accel = await this.accel.get();
    if (accel.degraded) this.log.warn({ accel: accel.accel }, accel.reason);
    this.log.info({ queue: s.queue, done: s.done, failed: s.failed, base: base.name, accel: accel.accel, concurrency: s.concurrency, timeout: s.timeout / 1000 }, 'jobrunner started');
    for (const d of [s.done, s.failed]) {
      const n = await sweepTemps(d);
      if (n > 0) this.log.info({ dir: d, files: n }, 'removed temp files left by a previous run');
    }
    const scratch = await sweepVmTmp(s.queue); // no VM of this spool runs now: we hold its lock
    if (scratch > 0) this.log.info({ dirs: scratch }, 'removed qemu scratch directories left by a previous run');
    await this.recover();
    this.watcher = new QueueWatcher({
      dir: s.queue, settleMs: s.settle, rescanMs: s.rescanInterval,
      onReady: (c) => { void this.intake(c).catch((e: unknown) => this.log.error({ err: messageOf(e), file: c.file }, 'intake failed')); },
      onError: (e) => this.log.error({ err: messageOf(e) }, 'queue watcher error'),
      onRenamed: (from, to) => this.log.warn({ submitted: from, renamed: to }, 'renamed a queue entry whose name is not valid UTF-8'),
    });
    await this.watcher.start();
    if (s.once) this.onceTimer = setInterval(() => { void this.checkOnceDone(); }, 500);
  }

  /** Stop intake; running jobs get shutdownGrace to finish, then are killed and left for requeue. */
  async stop(why: string): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.log.info({ why, running: this.scheduler.running }, 'stopping');
    if (this.onceTimer) clearInterval(this.onceTimer);
    await this.watcher?.close();
    this.scheduler.clearPending();
    const idle = this.scheduler.onIdle();
    const grace = new Promise<'grace'>((r) => setTimeout(() => r('grace'), this.s.shutdownGrace).unref());
    if (await Promise.race([idle.then(() => 'idle' as const), grace]) === 'grace') {
      this.log.warn({ running: this.scheduler.running }, 'shutdown grace over: killing running jobs; they are requeued');
      this.abort.abort();
      await idle;
    }
    if (this.locked) await rm(path.join(this.s.queue, LOCK), { force: true });
    this.log.info('stopped');
    this.resolveDone();
  }

  /**
   * One service per spool. The lock lives in queue/, where submitters can create dotfiles: it is
   * only read when it is a regular file, and (re)created with O_EXCL|O_NOFOLLOW so a planted
   * symlink can never make us write through it.
   */
  private async lock(): Promise<void> {
    const file = path.join(this.s.queue, LOCK);
    const st = await lstat(file).catch(() => null);
    if (st?.isFile()) {
      const other = Number((await readFile(file, 'utf8').catch(() => '')).trim());
      if (other && other !== process.pid && pidAlive(other)) {
        const cmd = await readFile(`/proc/${other}/cmdline`, 'utf8').catch(() => '');
        if (cmd.includes('jobrunner')) throw new JrError('JR_E_CONFIG', `another jobrunner (pid ${other}) is serving ${this.s.queue}`);
      }
    }
    if (st) await rm(file, { recursive: true, force: true });
    const fh = await open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
    try { await fh.writeFile(`${process.pid}\n`); } finally { await fh.close(); }
    this.locked = true;
  }

  /**
   * queue/.running must be ours: a submitter could pre-create it (as a directory they can write,
   * or a symlink), and everything the claim screening relies on assumes only we write there.
   */
  private async checkRunningDir(): Promise<void> {
    const dir = path.join(this.s.queue, RUNNING);
    const st = await lstat(dir);
    const uid = process.getuid?.() ?? st.uid;
    if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o022) !== 0) {
      throw new JrError('JR_E_CONFIG', `${dir} must be a directory owned by this service and writable only by it (found ${st.isDirectory() ? `mode ${(st.mode & 0o777).toString(8)}, owner ${st.uid}` : 'something else'}); move it away and restart`);
    }
  }

  /** Claims left by a crashed service: kill their qemu, count the attempt, run them again. */
  private async recover(): Promise<void> {
    // A qemu that outlived its service (pdeathsig should prevent it) still holds a claim's disks:
    // it must be gone before that claim runs again, or two VMs would write one image.
    for (const pid of await findOrphanQemu(path.join(this.s.queue, RUNNING), this.s.qemu)) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
      this.log.warn({ pid }, 'killed a qemu left by a previous run');
    }
    for (const st of await listClaims(this.s.queue)) {
      if (!st.claim) {
        await dropClaim(st.dir);
        this.log.info({ dir: st.dir }, 'removed an incomplete claim (its file is still queued)');
        continue;
      }
      const c = st.claim;
      if (await screenClaimed(this.s, c, this.o.version)) {
        this.log.warn({ id: c.lease.id, name: c.lease.name }, 'rejected a claimed queue entry that is not a plain file');
        continue;
      }
      // Only a run that started and was not stopped on purpose counts as an interrupted attempt.
      if (c.lease.startedAt !== null && !c.lease.requeued) c.lease.attempt += 1;
      c.lease.requeued = false;
      // Wherever the previous service left it, it runs again: requeued by recovery, then claimed.
      c.lease.state = transition(transition(c.lease.state, 'recover'), 'claim');
      await writeLease(c.dir, c.lease);
      this.log.info({ id: c.lease.id, name: c.lease.name, attempt: c.lease.attempt, lastError: c.lease.lastError }, 'requeued a job interrupted by a previous run');
      this.schedule(c);
    }
  }

  private async intake(c: Candidate): Promise<void> {
    if (this.stopping || this.claiming.has(c.file)) return;
    const sub = parseSubmission(c.file);
    if (!sub) { this.log.debug({ file: c.file }, 'ignoring a queue entry that is not *.img or *.img.xz'); return; }
    this.claiming.add(c.file);
    try {
      // Claim whatever the entry is, then look at it where the submitter can no longer swap it.
      const claimed = await claim(this.s.queue, sub, c.mtime, c.submitted);
      if (!claimed) return;
      const rejected = await screenClaimed(this.s, claimed, this.o.version);
      if (rejected) {
        this.log.warn({ file: c.file, status: rejected }, 'rejected a queue entry that is not a plain file');
        return;
      }
      this.schedule(claimed);
    } finally {
      this.claiming.delete(c.file);
    }
  }

  private schedule(c: Claim): void {
    this.scheduler.add(c.lease.id, async () => {
      if (this.stopping && this.abort.signal.aborted) return;
      try {
        await runJob(c, {
          settings: this.s, accel: this.accel, version: this.o.version, signal: this.abort.signal, runAs: this.o.runAs,
          emit: (ev) => this.event(ev),
        });
      } catch (e) {
        this.log.error({ id: c.lease.id, err: messageOf(e) }, 'job failed inside the service (left claimed for the next start)');
      }
    });
  }

  private event(ev: JobEvent): void {
    const { type, ...rest } = ev;
    switch (type) {
      case 'started': this.log.info(rest, 'job started'); break;
      case 'booted': this.log.debug(rest, 'job VM ended'); break;
      case 'finished': this.log.info(rest, `job ${ev.type === 'finished' ? ev.status : ''}`); break;
      case 'requeued': this.log.warn(rest, 'job requeued'); break;
      case 'stuck': this.log.error(rest, 'job could not be published; it stays claimed and is retried at next start'); break;
      case 'step': this.log.debug(rest, 'step'); break;
      case 'cleanupFailed': this.log.debug(rest, 'cleanup failed (disk space may be held until the next start)'); break;
    }
  }

  private async checkOnceDone(): Promise<void> {
    if (this.stopping || this.scheduler.size > 0 || this.claiming.size > 0 || (this.watcher?.settling ?? 0) > 0) return;
    const left = (await readdir(this.s.queue).catch(() => [] as string[])).filter((f) => parseSubmission(f) !== null);
    if (left.length === 0 && this.scheduler.size === 0) await this.stop('--once: the queue is empty');
  }
}

/** Remove every qemu scratch directory a previous run of this spool's service left behind. */
async function sweepVmTmp(queueDir: string): Promise<number> {
  const prefix = vmTmpPrefix(queueDir);
  let n = 0;
  for (const f of await readdir(os.tmpdir()).catch(() => [] as string[])) {
    if (f.startsWith(prefix)) { await rm(path.join(os.tmpdir(), f), { recursive: true, force: true }); n++; }
  }
  return n;
}
