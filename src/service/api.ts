// The service's side of the HTTP API: what src/http's routes call. It knows where a job is
// (queued file, claim, published result) and turns that into a JobView; src/http never touches
// spool files itself. Finished jobs are indexed in memory (loaded at start, kept current from the
// service's events): only what filters and counts need (measured: 0.25 KB a job with a short
// name, 0.55 KB with a 200-byte one; whole records cost ~2 KB each); a job's record is read from
// its NAME.json when it is shown (a page of a listing, one job), the most recent ones kept at hand.
import { lstat, readdir } from 'node:fs/promises';
import path from 'node:path';
import type { Settings } from '../config.js';
import { JrError } from '../errors.js';
import { resultFileName, type FinalStatus, type JobStatus, type ResultForm } from '../spool/record.js';
import { entryExists, readJson } from '../fsutil.js';
import { claimPaths, inputName, isJobId, readLease, RUNNING, type Lease } from '../spool/claim.js';
import { parseSubmission } from '../spool/names.js';
import { heartbeatOf, type Heartbeat } from './heartbeat.js';
import { lastConsoleLine, type LogSource } from './log-tail.js';
import { idInFileName, type UploadRecord, type Uploads } from './uploads.js';

export type ViewState = 'queued' | 'running' | 'finished';

/** One job as the API shows it. */
export interface JobView {
  /** null only for a file dropped into queue/ by hand and not claimed yet (ids come at claim). */
  id: string | null;
  name: string;
  state: ViewState;
  owner: string | null;
  status: FinalStatus | null;
  submittedAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  /** Queued: 1 is next. */
  position: number | null;
  /** Running: seconds since start, and seconds left before the --timeout watchdog. */
  elapsed: number | null;
  timeLeft: number | null;
  lastLine: string | null;
  heartbeat: Heartbeat | null;
  exitCode: number | null;
  reason: string | null;
  /** The published status record (NAME.json) of a finished job. */
  record: JobStatus | null;
}

export interface ListQuery { state?: ViewState[]; status?: FinalStatus[]; token?: string; limit: number; offset: number }

/** What the index keeps of a finished job; the record itself stays in `dir`/`publishedAs`.json. */
interface Finished { id: string; status: FinalStatus; publishedAs: string; finishedAt: number; dir: string }

/** Whole records kept at hand: the newest published and the last shown (metrics, followers, the dashboard). */
const RECENT = 512;

export interface ServiceLink {
  settings: Settings;
  uploads: Uploads;
}

/** Job lookups and listings for the API. */
export class JobsApi {
  private readonly finished = new Map<string, Finished>();
  /** Finished ids, oldest first (ids no longer in `finished` are skipped). */
  private order: string[] = [];
  private readonly recent = new Map<string, JobStatus>();
  /** The few result directories, one string each (every index entry points at one of them). */
  private readonly dirs = new Map<string, string>();
  private readonly owners = new Map<string, string>();
  constructor(private readonly l: ServiceLink) {}

  /** Index what is already in done/ and failed/ and who owns which upload. */
  async load(): Promise<void> {
    for (const r of await this.l.uploads.all()) this.owners.set(r.id, r.owner);
    const all: Finished[] = [];
    for (const dir of [this.l.settings.done, this.l.settings.failed]) {
      for (const f of await readdir(dir).catch(() => [] as string[])) {
        if (!f.endsWith('.json') || f.startsWith('.')) continue;
        const st = await readStatus(path.join(dir, f));
        if (st) all.push(this.entryOf(st, dir));
      }
    }
    all.sort((a, b) => a.finishedAt - b.finishedAt);
    for (const e of all) if (!this.finished.has(e.id)) { this.finished.set(e.id, e); this.order.push(e.id); }
  }

  /** A result was published (the service's `finished` event): index its NAME.json. */
  async published(jsonPath: string): Promise<JobStatus | null> {
    const st = await readStatus(jsonPath);
    if (st) this.index(st, path.dirname(jsonPath));
    return st;
  }

  /** Index a record just published in `dir` (the caller has it: nothing is read). */
  index(st: JobStatus, dir: string): void {
    if (this.finished.has(st.id)) return;
    this.finished.set(st.id, this.entryOf(st, dir));
    this.order.push(st.id);
    this.remember(st);
  }

  private remember(st: JobStatus): void {
    this.recent.delete(st.id);
    this.recent.set(st.id, st);
    if (this.recent.size > RECENT) this.recent.delete(this.recent.keys().next().value!);
  }

  private entryOf(st: JobStatus, dir: string): Finished {
    let d = this.dirs.get(dir);
    if (d === undefined) { d = dir; this.dirs.set(dir, d); }
    return { id: st.id, status: st.status, publishedAs: st.publishedAs, finishedAt: Date.parse(st.finishedAt), dir: d };
  }

  /**
   * A finished job's record: at hand, or read from its NAME.json (null, and forgotten, when it is
   * gone or replaced). `fresh`: read it even when at hand (before serving its files: an operator
   * may have removed the result, and a later job taken its name).
   */
  private async record(f: Finished, fresh = false): Promise<JobStatus | null> {
    const hit = fresh ? undefined : this.recent.get(f.id);
    if (hit) return hit;
    const st = await readStatus(path.join(f.dir, `${f.publishedAs}.json`));
    if (!st || st.id !== f.id) {
      this.finished.delete(f.id);
      this.recent.delete(f.id);
      if (this.order.length > 2 * this.finished.size + 1024) this.order = this.order.filter((id) => this.finished.has(id));
      return null;
    }
    this.remember(st);
    return st;
  }

  /** A finished job's index entry and record, or null. */
  private async finishedJob(id: string, fresh = false): Promise<{ f: Finished; st: JobStatus } | null> {
    const f = isJobId(id) ? this.finished.get(id) : undefined;
    const st = f ? await this.record(f, fresh) : null;
    return f && st ? { f, st } : null;
  }

  /** Remember an upload's owner (from the moment it is accepted). */
  uploaded(rec: UploadRecord): void {
    this.owners.set(rec.id, rec.owner);
  }

  /** The token name that owns job `id` (null: dropped into queue/ by hand, owned by nobody). */
  ownerOf(id: string): string | null {
    return this.owners.get(id) ?? null;
  }

  /** Counts by state and the oldest queued submission (for metrics and the dashboard). */
  async summary(): Promise<{ queued: number; running: number; finished: number; oldestQueuedAt: string | null; byStatus: Record<string, number> }> {
    const live = await this.liveJobs();
    const queued = live.filter((j) => j.state === 'queued');
    const byStatus: Record<string, number> = {};
    for (const f of this.finished.values()) byStatus[f.status] = (byStatus[f.status] ?? 0) + 1;
    return { queued: queued.length, running: live.length - queued.length, finished: this.finished.size,
      oldestQueuedAt: queued.reduce<string | null>((m, j) => (m === null || j.submittedAt < m ? j.submittedAt : m), null), byStatus };
  }

  /** Jobs by state and owner, queued first (in order), then running, then finished newest first. */
  async list(q: ListQuery): Promise<{ jobs: JobView[]; total: number }> {
    const want = (s: ViewState): boolean => !q.state || q.state.includes(s);
    const okOwner = (id: string | null): boolean => !q.token || (id !== null && this.ownerOf(id) === q.token);
    // A status filter selects finished jobs only (queued and running ones have no status yet).
    const live = (want('queued') || want('running')) && !q.status
      ? (await this.liveJobs()).filter((j) => want(j.state) && okOwner(j.id)) : [];
    const fin: Finished[] = [];
    if (want('finished')) {
      for (let i = this.order.length - 1; i >= 0; i--) { // newest first
        const f = this.finished.get(this.order[i]!);
        if (f && okOwner(f.id) && (!q.status || q.status.includes(f.status))) fin.push(f);
      }
    }
    const total = live.length + fin.length;
    const page: JobView[] = live.slice(q.offset, q.offset + q.limit);
    const from = Math.max(0, q.offset - live.length);
    const shown = await Promise.all(fin.slice(from, from + q.limit - page.length).map((f) => this.record(f)));
    for (const st of shown) if (st) page.push(this.finishedView(st));
    return { jobs: page, total };
  }

  /** One job by id, live while it runs; null when unknown. */
  async get(id: string): Promise<JobView | null> {
    if (!isJobId(id)) return null;
    const done = await this.finishedJob(id);
    if (done) return this.finishedView(done.st);
    const live = await this.liveJobs();
    return live.find((j) => j.id === id) ?? null;
  }

  /** Where job `id`'s console log is; null when the job is unknown. */
  async logSource(id: string): Promise<LogSource | null> {
    if (!isJobId(id)) return null;
    const done = await this.finishedJob(id, true);
    if (done) return { kind: 'final', file: path.join(done.f.dir, `${done.st.publishedAs}.log`), status: done.st };
    const dir = path.join(this.l.settings.queue, RUNNING, id);
    if (await entryExists(claimPaths(dir).lease)) return { kind: 'live', file: claimPaths(dir).log };
    // Not claimed yet (an upload waiting in queue/), or between its claim being dropped and its
    // result being indexed: an upload we know of has no log yet. Called every 100 ms by every
    // follower, so it reads nothing more (the follower gives up on an id unknown for 10 s).
    return this.owners.has(id) ? { kind: 'none' } : null;
  }

  /**
   * A finished job's published result: the image, or its /job/output as a .tar.xz ("publish":
   * "output"). Never the input kept as evidence of a job that did not run.
   */
  async resultFile(id: string): Promise<{ file: string; name: string; form: ResultForm; status: JobStatus }> {
    const done = await this.finishedJob(id, true);
    if (!done) throw new JrError('JR_E_NOT_FOUND', `no finished job ${id}`);
    const { f, st } = done;
    if (!st.output) throw new JrError('JR_E_NOT_FOUND', `job ${id} has no result (it ended ${st.status} before it ran)`);
    const form = st.output.form ?? 'image';
    const name = resultFileName(st.publishedAs, form);
    return { file: path.join(f.dir, name), name, form, status: st };
  }

  private finishedView(st: JobStatus): JobView {
    return {
      id: st.id, name: st.publishedAs, state: 'finished', owner: this.ownerOf(st.id), status: st.status,
      submittedAt: st.submittedAt, startedAt: st.startedAt, finishedAt: st.finishedAt, position: null, elapsed: null, timeLeft: null,
      lastLine: st.console?.lastLine ?? null, heartbeat: null, exitCode: st.exitCode, reason: st.reason, record: st,
    };
  }

  /** Queued (claimed-not-started first, then queue/ by age) and running jobs, from the spool. */
  private async liveJobs(): Promise<JobView[]> {
    const s = this.l.settings;
    const claimed: Array<{ lease: Lease; dir: string }> = [];
    const moving = new Set<string>(); // queue/ names whose claim is being made: listed as claimed
    for (const id of await readdir(path.join(s.queue, RUNNING)).catch(() => [] as string[])) {
      if (!isJobId(id)) continue;
      const dir = path.join(s.queue, RUNNING, id);
      const lease = await readLease(dir);
      if (!lease || lease.id !== id) continue;
      claimed.push({ lease, dir });
      // A claim writes its lease before it moves the file in (spool/claim.ts): until then the file
      // is still in queue/, and listing it from there as well showed one job twice.
      if (!lease.startedAt && !await entryExists(path.join(dir, inputName(lease.compressed)))) moving.add(lease.submitted);
    }
    const base = (id: string | null, name: string, submittedAt: string): JobView => ({
      id, name, state: 'queued', owner: id ? this.ownerOf(id) : null, status: null, submittedAt, startedAt: null, finishedAt: null,
      position: null, elapsed: null, timeLeft: null, lastLine: null, heartbeat: null, exitCode: null, reason: null, record: null,
    });
    const queued: JobView[] = claimed.filter((c) => !c.lease.startedAt).sort((a, b) => a.lease.claimedAt.localeCompare(b.lease.claimedAt))
      .map((c) => base(c.lease.id, c.lease.name, c.lease.submittedAt));
    const files: Array<{ view: JobView; mtime: number }> = [];
    for (const f of await readdir(s.queue).catch(() => [] as string[])) {
      const sub = parseSubmission(f);
      if (!sub || moving.has(f)) continue;
      const st = await lstat(path.join(s.queue, f)).catch(() => null);
      if (!st) continue;
      const id = idInFileName(f);
      const rec = id ? await this.l.uploads.get(id) : null;
      const ours = rec !== null && rec.file === f && rec.ino === st.ino && !rec.claimedAt;
      files.push({ view: base(ours ? rec.id : null, ours ? rec.name : sub.name, st.mtime.toISOString()), mtime: st.mtimeMs });
    }
    files.sort((a, b) => a.mtime - b.mtime);
    queued.push(...files.map((f) => f.view));
    queued.forEach((v, i) => { v.position = i + 1; });
    const running: JobView[] = [];
    for (const c of claimed.filter((x) => x.lease.startedAt)) {
      const started = Date.parse(c.lease.startedAt!);
      const elapsed = (Date.now() - started) / 1000;
      running.push({
        ...base(c.lease.id, c.lease.name, c.lease.submittedAt), state: 'running', startedAt: c.lease.startedAt,
        elapsed: Math.round(elapsed), timeLeft: Math.max(0, Math.round(s.timeout / 1000 - elapsed)),
        lastLine: await lastConsoleLine(claimPaths(c.dir).log),
        heartbeat: c.lease.qemuPid ? await heartbeatOf(c.lease.qemuPid) : null,
      });
    }
    return [...queued, ...running];
  }
}

async function readStatus(file: string): Promise<JobStatus | null> {
  const st = await readJson(file) as JobStatus | null;
  return st !== null && typeof st === 'object' && typeof st.id === 'string' && typeof st.finishedAt === 'string' && typeof st.publishedAs === 'string' ? st : null;
}
