// The service: owns start-up (spool lock, recovery of stale claims, orphan qemu, temp sweep), the
// watcher, and drain on stop. Emits everything through the one logger; prints nothing itself.
import { EventEmitter } from 'node:events';
import { rename, statfs } from 'node:fs/promises';
import type { Settings } from './config.js';
import { JrError, messageOf } from './errors.js';
import { loadBaseImage } from './image/base.js';
import { runJob, type JobEvent } from './job/lifecycle.js';
import { transition } from './job/state.js';
import { AccelState } from './job/vm-run.js';
import type { Logger } from './log.js';
import { Scheduler } from './scheduler.js';
import { mapLimit } from './semaphore.js';
import { barrierStats } from './fsync-shared.js';
import { prescreenClaim } from './job/prescreen.js';
import { sizeProblem } from './job/validate.js';
import type { JobStatus } from './spool/record.js';
import { recoverHeld, rejectChunk, type BulkOutcome, type BulkRejector } from './spool/reject-bulk.js';
import type { RunAs } from './run-as.js';
import { claim, dropClaim, newJobId, RUNNING, writeLease, type Claim } from './spool/claim.js';
import { JobsApi } from './service/api.js';
import { TokenStore } from './service/tokens.js';
import { idInFileName, Uploads } from './service/uploads.js';
import { parseSubmission } from './spool/names.js';
import { screenClaimed } from './spool/reject.js';
import { Spool } from './spool/spool.js';
import { countSubmissions, hasSubmission, QueueWatcher, type Candidate } from './spool/watcher.js';
import { findOrphanQemu } from './vm/orphans.js';
import { holdsFilesUnder } from './procfs.js';
import type { Runner } from './job/runner.js';
import { slurmRunner } from './slurm/runner.js';
import { unshareRunner } from './job/unshare-runner.js';
import { sweepUnshare } from './unshare/sweep.js';
import { sweepLayerBuilds } from './deps/layer.js';
import path from 'node:path';

export interface ServiceOptions {
  settings: Settings;
  logger: Logger;
  version: string;
  runAs?: RunAs;
  /** What runs jobs, overriding --backend (tests wrap the real runners to inject faults). */
  runner?: Runner;
}

// Queue entries claimed and screened at once: each waits at a few durability barriers (one syncfs
// shared by all in flight: fsync-shared.ts), so the more in flight, the fewer syncfs per file; a
// few hundred small claims bound memory (a claim in flight is a lease object and a few paths).
const INTAKE_PARALLEL = 256;
// A batch of intake that takes longer than this logs its progress this often; one of at least
// LARGE_BATCH entries logs a summary at its end however fast it went.
const PROGRESS_MS = 2000;
const LARGE_BATCH = 1000;
// Entries whose size rules them out are rejected in chunks of this many (spool/reject-bulk.ts), two
// chunks at a time: one's synchronous calls run while the other waits at a barrier. A chunk holds
// the event loop for ~20-30 ms at most (bench/intake).
const BULK_CHUNK = 128;
const BULK_PARALLEL = 2;

/** The job service. `start()` then `done` resolves when it has stopped (after `stop()` or --once). */
export class Service {
  private readonly s: Settings;
  private readonly spool: Spool;
  private readonly log: Logger;
  private readonly scheduler: Scheduler;
  private readonly accel: AccelState;
  /** Where jobs run: undefined is the local qemu (the lifecycle's default). */
  private readonly runner: Runner | undefined;
  private readonly abort = new AbortController();
  private watcher: QueueWatcher | null = null;
  private stopping = false;
  private locked = false;
  private onceTimer: NodeJS.Timeout | null = null;
  private resolveDone!: () => void;
  /** Resolves once the service has fully stopped. */
  readonly done: Promise<void> = new Promise((r) => { this.resolveDone = r; });
  private readonly claiming = new Set<string>();
  /** What intake did since start (for the progress log). */
  private readonly tally = { claimed: 0, rejected: 0, scheduled: 0 };
  private lastProgress = { at: 0, claimed: 0 };
  // --- HTTP API (issue 14): uploads carry their id into the claim; cancel; events for followers.
  /** Every job event, for the API's followers and index (`job` events). */
  readonly events = new EventEmitter();
  readonly uploads: Uploads;
  readonly tokens: TokenStore;
  readonly api: JobsApi;
  /** Scheduled jobs: their cancel switch and whether their task has started. */
  private readonly live = new Map<string, { cancel: AbortController; started: boolean; skip: boolean; claim: Claim }>();
  private startedAt = new Date();
  // --- end HTTP API fields

  constructor(private readonly o: ServiceOptions) {
    this.s = o.settings;
    this.spool = new Spool(o.settings);
    this.log = o.logger;
    this.scheduler = new Scheduler(o.settings.concurrency);
    this.accel = new AccelState(o.settings.accel);
    this.runner = o.runner ?? (o.settings.backend === 'slurm' ? slurmRunner({ ...o.settings, baseImageDir: path.resolve(o.settings.baseImageDir) }) : undefined);
    this.uploads = new Uploads(o.settings.queue);
    this.tokens = new TokenStore(o.settings.tokens);
    this.api = new JobsApi({ settings: o.settings, uploads: this.uploads });
    this.events.setMaxListeners(0); // one per log follower
    // --- isolation (issue 12): the operator's choice of runner; the job never picks it ---
    if (!o.runner && o.settings.isolation === 'unshare') {
      if (o.settings.backend === 'slurm') throw new JrError('JR_E_CONFIG', '--isolation unshare runs on this host only: it cannot be combined with --backend slurm (Slurm nodes run VMs)');
      this.runner = unshareRunner(o.settings);
    }
    // --- end isolation ---
  }

  async start(): Promise<void> {
    const s = this.s;
    await this.spool.create();
    await this.spool.lock();
    this.locked = true;
    await this.spool.checkRunningDir();
    const base = await loadBaseImage(s.baseImageDir, s.baseImage);
    const accel = await this.accel.get();
    if (accel.degraded) this.log.warn({ accel: accel.accel }, accel.reason);
    this.log.info({ queue: s.queue, done: s.done, failed: s.failed, base: base.name, accel: accel.accel, concurrency: s.concurrency, timeout: s.timeout / 1000 }, 'jobrunner started');
    for (const { dir, files } of await this.spool.sweepTemps()) {
      if (files > 0) this.log.info({ dir, files }, 'removed temp files left by a previous run');
    }
    const scratch = await this.spool.sweepScratch(); // no VM of this spool runs now: we hold its lock
    if (scratch > 0) this.log.info({ dirs: scratch }, 'removed qemu scratch directories left by a previous run');
    await this.uploads.open(false); // made by the first upload; checked now if a previous run made it
    const parts = await this.uploads.sweep();
    if (parts > 0) this.log.info({ files: parts }, 'removed incomplete uploads left by a previous run');
    await this.api.load();
    // --- isolation (issue 12): unshare jobs' mounts, scratch and cgroups left by a crash ---
    const sandboxes = await sweepUnshare(s.queue);
    if (sandboxes > 0) this.log.info({ entries: sandboxes }, 'removed unshare scratch directories and cgroups left by a previous run');
    // --- end isolation ---
    // deps (issue 11): layer builds that died with a previous run (after the sweep above, which
    // unmounts its own unshare installs; their layers' locks decide, so another live service's stay).
    const builds = await sweepLayerBuilds(s.depsCache);
    if (builds > 0) this.log.info({ dirs: builds }, 'removed deps layer builds left by a previous run');
    await this.recover();
    this.watcher = new QueueWatcher({
      dir: s.queue, settleMs: s.settle, rescanMs: s.rescanInterval,
      capacity: () => this.capacity(),
      onReady: (batch) => this.intake(batch),
      onError: (e) => this.log.error({ err: messageOf(e) }, 'queue watcher error'),
      onRenamed: (from, to) => this.log.warn({ submitted: from, renamed: to }, 'renamed a queue entry whose name is not valid UTF-8'),
    });
    await this.watcher.start();
    if (s.once) this.onceTimer = setInterval(() => { void this.checkOnceDone(); }, 500);
  }

  /** True once stop() began: the API refuses new uploads. */
  get isStopping(): boolean { return this.stopping; }

  /** The machine at a glance, for the dashboard and metrics. */
  async machine(): Promise<{
    version: string; accel: string; accelReason: string; concurrency: number; running: number; diskFree: number | null; timeout: number; startedAt: string;
  }> {
    const a = await this.accel.get();
    const fs = await statfs(this.s.queue).catch(() => null);
    return { version: this.o.version, accel: a.accel, accelReason: a.reason, concurrency: this.s.concurrency, running: this.scheduler.running,
      diskFree: fs ? fs.bavail * fs.bsize : null, timeout: this.s.timeout / 1000, startedAt: this.startedAt.toISOString() };
  }

  /**
   * Cancel job `id` (the API checked the owner): a queued upload is claimed and published as
   * cancelled at once; a claimed one that has not started is published without waiting for a
   * slot; a running one has its VM killed (TERM, then KILL) and is published as cancelled.
   * Resolves once the job is published. 'finished'/'unknown' when there is nothing to cancel.
   */
  async cancel(id: string, reason: string): Promise<'cancelled' | 'finished' | 'unknown'> {
    // Subscribed before the abort: the job's end cannot be missed.
    const endOf = (): Promise<void> => new Promise<void>((resolve) => {
      const on = (ev: JobEvent): void => {
        if (ev.id === id && (ev.type === 'finished' || ev.type === 'stuck' || ev.type === 'requeued')) { this.events.off('job', on); resolve(); }
      };
      this.events.on('job', on);
    });
    const entry = this.live.get(id);
    if (entry) {
      const ended = endOf();
      entry.cancel.abort(reason);
      if (!entry.started) {
        entry.skip = true; // its scheduled task, when it comes, does nothing
        void this.runClaim(entry.claim, entry.cancel.signal).finally(() => this.live.delete(id));
      }
      await ended;
      return 'cancelled';
    }
    const rec = await this.uploads.get(id);
    if (rec && !rec.claimedAt && !this.claiming.has(rec.file)) {
      const sub = parseSubmission(rec.file);
      const mine = sub ? await this.uploads.match(rec.file) : null;
      if (sub && mine) {
        this.claiming.add(rec.file);
        try {
          const c = await claim(this.s.queue, { ...sub, name: mine.name }, new Date(mine.uploadedAt), undefined, mine.id);
          if (c && await this.uploads.confirm(mine, c.input)) {
            const ended = endOf();
            const ctl = new AbortController();
            ctl.abort(reason);
            void this.runClaim(c, ctl.signal);
            await ended;
            return 'cancelled';
          }
          if (c) this.schedule(c); // not the upload after all (see intake): run it as what it is
        } finally { this.claiming.delete(rec.file); }
      }
    }
    return (await this.api.get(id))?.state === 'finished' ? 'finished' : 'unknown';
  }
  // --- end HTTP API methods

  /** Stop intake; running jobs get shutdownGrace to finish, then are killed and left for requeue. */
  async stop(why: string): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.log.info({ why, running: this.scheduler.running }, 'stopping');
    if (this.onceTimer) clearInterval(this.onceTimer);
    await this.watcher?.close();
    this.scheduler.clearPending();
    for (const e of this.live.values()) if (!e.started) e.skip = true;
    const idle = this.scheduler.onIdle();
    const grace = new Promise<'grace'>((r) => setTimeout(() => r('grace'), this.s.shutdownGrace).unref());
    if (await Promise.race([idle.then(() => 'idle' as const), grace]) === 'grace') {
      this.log.warn({ running: this.scheduler.running }, 'shutdown grace over: killing running jobs; they are requeued');
      this.abort.abort();
      await idle;
    }
    if (this.locked) await this.spool.unlock();
    this.log.info({ ...this.tally, ...this.watcher?.stats, barriers: barrierStats.syncs }, 'intake since start'); // (house-intake) bench/intake reads it
    this.log.info('stopped');
    this.resolveDone();
  }

  /** Claims left by a crashed service: kill their qemu, count the attempt, run them again. */
  private async recover(): Promise<void> {
    // A qemu that outlived its service (pdeathsig should prevent it) still holds a claim's disks:
    // it must be gone before that claim runs again, or two VMs would write one image.
    // Entries a bulk rejection had taken (spool/reject-bulk.ts) become ordinary claims, listed below.
    const held = await recoverHeld({ queue: this.s.queue, failed: this.s.failed });
    if (held.claims.length + held.published + held.requeued > 0) {
      this.log.info({ claims: held.claims.length, published: held.published, requeued: held.requeued }, 'recovered entries an interrupted bulk rejection held');
    }
    const claims = await this.spool.claims();
    // A run shipped to Slurm belongs to its Slurm job (it may run on this very host): never kill it.
    const remote = claims.filter((st) => st.claim?.lease.remote).map((st) => st.dir);
    for (const pid of await findOrphanQemu(this.spool.running, this.s.qemu)) {
      if ((await Promise.all(remote.map((d) => holdsFilesUnder(pid, d)))).some(Boolean)) continue;
      try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
      this.log.warn({ pid }, 'killed a qemu left by a previous run');
    }
    for (const st of claims) {
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
      // A claim that never started (cut short at intake, or handed back by a bulk rejection) is
      // prescreened as at intake: junk is rejected now, not after waiting for a VM slot.
      if (c.lease.startedAt === null && await this.prescreened(c)) continue;
      // Only a run that started and was not stopped on purpose counts as an interrupted attempt.
      // A remote run is re-attached to, not run again: it is not an interrupted attempt either.
      if (c.lease.startedAt !== null && !c.lease.requeued && !c.lease.remote) c.lease.attempt += 1;
      c.lease.requeued = false;
      // Wherever the previous service left it, it runs again: requeued by recovery, then claimed.
      c.lease.state = transition(transition(c.lease.state, 'recover'), 'claim');
      await writeLease(c.dir, c.lease);
      this.log.info({ id: c.lease.id, name: c.lease.name, attempt: c.lease.attempt, lastError: c.lease.lastError }, 'requeued a job interrupted by a previous run');
      this.schedule(c);
    }
  }

  /**
   * How many more queue entries intake may claim now: each VM slot plus one claim waiting for it,
   * so a freed slot is refilled at once. Whatever the queue holds, the scheduler then holds at most
   * 2 x concurrency claims (+ INTAKE_PARALLEL in flight, + what recovery found); the rest stay as
   * files in queue/ until a job ends and schedule() asks the watcher for more.
   */
  private capacity(): number {
    return this.stopping ? 0 : 2 * this.s.concurrency - this.scheduler.size;
  }

  /**
   * Claim and screen settled entries: those whose size rules them out in bulk (never waiting for
   * room: they need no VM), the rest INTAKE_PARALLEL at a time while the scheduler has room.
   * Returns those left queued for want of room.
   */
  private async intake(batch: Candidate[]): Promise<Candidate[]> {
    const left: Candidate[] = [];
    const progress = { size: batch.length, started: Date.now(), last: Date.now(), claimed: this.tally.claimed };
    const junk: Candidate[] = [];
    const rest: Candidate[] = [];
    for (const c of batch) (this.sizeJunk(c) ? junk : rest).push(c);
    await Promise.all([
      this.rejectBulk(junk, progress),
      mapLimit(rest, INTAKE_PARALLEL, async (c) => {
        if (this.capacity() <= 0) { left.push(c); return; }
        await this.intakeOne(c).catch((e: unknown) => this.log.error({ err: messageOf(e), file: c.file }, 'intake failed'));
        this.intakeProgress(progress, false);
      }),
    ]);
    this.intakeProgress(progress, true);
    return left;
  }

  /**
   * A plain file whose size alone rules it out, as it settled (the bulk path judges it again once
   * it holds it). Uploads keep the ordinary path: they carry an id and were checked on arrival.
   */
  private sizeJunk(c: Candidate): boolean {
    if (!c.plain || c.size === undefined || this.claiming.has(c.file) || idInFileName(c.file) !== null) return false;
    const sub = parseSubmission(c.file);
    return sub !== null && sizeProblem(c.size, sub.compressed, this.s.maxImageSize) !== null;
  }

  /** Reject size junk in chunks (spool/reject-bulk.ts); an entry it hands back is screened and run as usual. */
  private async rejectBulk(junk: Candidate[], progress: { size: number; started: number; last: number; claimed: number }): Promise<void> {
    if (junk.length === 0) return;
    const o: BulkRejector = {
      queue: this.s.queue, failed: this.s.failed, version: this.o.version,
      judge: (st, sub) => sizeProblem(st.size, sub.compressed, this.s.maxImageSize),
    };
    const chunks: Candidate[][] = [];
    for (let i = 0; i < junk.length; i += BULK_CHUNK) chunks.push(junk.slice(i, i + BULK_CHUNK));
    await mapLimit(chunks, BULK_PARALLEL, async (chunk) => {
      if (this.stopping) return; // still queued: the next start takes them
      const mine = chunk.filter((c) => !this.claiming.has(c.file));
      for (const c of mine) this.claiming.add(c.file);
      try {
        const r = await rejectChunk(o, mine.map((c) => ({ file: c.file, mtime: c.mtime, ...(c.submitted !== undefined ? { submitted: c.submitted } : {}) })));
        if (r.error !== null) this.log.error({ err: messageOf(r.error), files: mine.length }, 'bulk rejection failed part-way: what was not published was handed back');
        for (const x of r.outcomes) await this.bulkOutcome(x);
      } catch (e) {
        this.log.error({ err: messageOf(e), files: mine.length }, 'intake failed (bulk rejection): the entries stay queued');
      } finally {
        for (const c of mine) this.claiming.delete(c.file);
      }
      this.intakeProgress(progress, false);
    });
  }

  private async bulkOutcome(r: BulkOutcome): Promise<void> {
    switch (r.kind) {
      case 'rejected':
        this.tally.claimed++;
        this.tally.rejected++;
        this.event({ type: 'finished', id: r.status.id, name: r.status.name, status: 'rejected', reason: r.status.reason, path: r.json }, r.status);
        break;
      case 'claimed':
        this.tally.claimed++;
        await this.screenAndSchedule(r.claim, r.file).catch((e: unknown) => this.log.error({ err: messageOf(e), file: r.file }, 'intake failed'));
        break;
      case 'failed':
        this.log.error({ err: messageOf(r.error), file: r.file }, 'intake failed (bulk rejection)');
        break;
      case 'requeued': // grew after the look: queued again, taken when there is room
      case 'gone':
        break;
    }
  }

  private async intakeOne(c: Candidate): Promise<void> {
    if (this.stopping || this.claiming.has(c.file)) return;
    const sub = parseSubmission(c.file);
    if (!sub) { this.log.debug({ file: c.file }, 'ignoring a queue entry that is not *.img or *.img.xz'); return; }
    this.claiming.add(c.file);
    try {
      // An API upload keeps the id (and name) it was given at upload; see service/uploads.ts.
      const up = c.submitted === undefined ? await this.uploads.match(c.file) : null;
      // Claim whatever the entry is, then look at it where the submitter can no longer swap it.
      let claimed = await claim(this.s.queue, up ? { ...sub, name: up.name } : sub, c.mtime, c.submitted, up?.id);
      if (!claimed) return;
      if (up && !await this.uploads.confirm(up, claimed.input)) claimed = await this.reId(claimed, sub.name);
      this.tally.claimed++;
      await this.screenAndSchedule(claimed, c.file);
    } finally {
      this.claiming.delete(c.file);
    }
  }

  /** A fresh claim: rejected when it is not a plain file or cannot be a job (no VM slot needed), else scheduled. */
  private async screenAndSchedule(claimed: Claim, file: string): Promise<void> {
    const rejected = await screenClaimed(this.s, claimed, this.o.version);
    if (rejected) {
      this.tally.rejected++;
      this.log.warn({ file, status: rejected }, 'rejected a queue entry that is not a plain file');
      return;
    }
    if (await this.prescreened(claimed)) return;
    this.tally.scheduled++;
    this.schedule(claimed);
  }

  /** Junk (empty, too big, no filesystem) is rejected without waiting for a VM slot: true when it was. */
  private async prescreened(c: Claim): Promise<boolean> {
    const pre = await prescreenClaim(this.s, c, this.o.version);
    if (!pre) return false;
    this.tally.rejected++;
    this.event({ type: 'finished', id: c.lease.id, name: c.lease.name, status: 'rejected', reason: pre.reason, path: pre.file });
    return true;
  }

  /**
   * A long or large intake says how far it got every PROGRESS_MS (claimed, rejected, scheduled since start,
   * the rate, and how many entries are still queued), so a flood is visible while it is worked off.
   */
  private intakeProgress(batch: { size: number; started: number; last: number; claimed: number }, final: boolean): void {
    const now = Date.now();
    const large = batch.size >= LARGE_BATCH || now - batch.started >= PROGRESS_MS;
    if (!large || (!final && now - batch.last < PROGRESS_MS)) return;
    const t = { ...this.tally };
    const perSecond = Math.round((t.claimed - batch.claimed) / Math.max((now - batch.last) / 1000, 0.001));
    batch.last = now;
    batch.claimed = t.claimed;
    void countSubmissions(this.s.queue).catch(() => null).then((queued) => {
      this.log.info({ ...t, perSecond, queued }, final ? 'intake: worked through a large batch of the queue' : 'intake: working through a large queue');
    });
  }

  private schedule(c: Claim): void {
    const id = c.lease.id;
    if (this.live.has(id)) return;
    const entry = { cancel: new AbortController(), started: false, skip: false, claim: c };
    this.live.set(id, entry);
    const added = this.scheduler.add(id, async () => {
      if (entry.skip || (this.stopping && this.abort.signal.aborted)) return;
      entry.started = true;
      try {
        await this.runClaim(c, entry.cancel.signal);
      } finally {
        this.live.delete(id);
        // A slot frees once the scheduler has dropped this job: then intake may claim the next one.
        setImmediate(() => { if (!this.stopping) void this.watcher?.rescan().catch((e: unknown) => this.log.error({ err: messageOf(e) }, 'queue watcher error')); });
      }
    });
    if (!added) this.live.delete(id);
  }

  private async runClaim(c: Claim, cancel: AbortSignal): Promise<void> {
    try {
      await runJob(c, {
        settings: this.s, accel: this.accel, version: this.o.version, signal: this.abort.signal, runAs: this.o.runAs, runner: this.runner,
        emit: (ev) => this.event(ev), cancel,
      });
    } catch (e) {
      this.log.error({ id: c.lease.id, err: messageOf(e) }, 'job failed inside the service (left claimed for the next start)');
    }
  }

  /**
   * A file named like an upload whose inode was swapped between the check and the claim: it is
   * not that upload, so it must not carry its id. Give its claim a fresh id (rename of the claim dir).
   */
  private async reId(c: Claim, name: string): Promise<Claim> {
    const id = newJobId();
    const dir = path.join(this.s.queue, RUNNING, id);
    await rename(c.dir, dir);
    const lease = { ...c.lease, id, name };
    await writeLease(dir, lease);
    this.log.warn({ id, submitted: c.lease.submitted }, 'a queue entry named like an upload was not that upload: it got an id of its own');
    return { dir, lease, input: path.join(dir, path.basename(c.input)) };
  }

  /** `record`: the NAME.json just published, when the caller has it (not read back from disk). */
  private event(ev: JobEvent, record?: JobStatus): void {
    if (ev.type === 'finished' && record) {
      this.api.index(record, path.dirname(ev.path));
      this.events.emit('job', ev);
    } else if (ev.type === 'finished') {
      // Index the result before anyone hears of it: a follower woken by this finds it published.
      void this.api.published(ev.path).then(() => this.events.emit('job', ev), () => this.events.emit('job', ev));
    } else this.events.emit('job', ev);
    const { type, ...rest } = ev;
    switch (type) {
      case 'started': this.log.info(rest, 'job started'); break;
      case 'booted': this.log.debug(rest, 'job VM ended'); break;
      case 'finished': this.log.info(rest, `job ${ev.type === 'finished' ? ev.status : ''}`); break;
      case 'requeued': this.log.warn(rest, 'job requeued'); break;
      case 'stuck': this.log.error(rest, 'job could not be published; it stays claimed and is retried at next start'); break;
      case 'step': this.log.debug(rest, 'step'); break;
      case 'cleanupFailed': this.log.debug(rest, 'cleanup failed (disk space may be held until the next start)'); break;
      case 'warning': this.log.warn(rest, 'job VM start'); break;
      case 'note': this.log.info(rest, 'job VM start'); break;
    }
  }

  private async checkOnceDone(): Promise<void> {
    const idle = (): boolean => !this.stopping && this.scheduler.size === 0 && this.claiming.size === 0 && !(this.watcher?.busy ?? false);
    if (!idle()) return;
    // A streamed look that stops at the first job: a huge queue is not listed every 500 ms.
    const left = await hasSubmission(this.s.queue).catch(() => false);
    if (!left && idle()) await this.stop('--once: the queue is empty');
  }
}
