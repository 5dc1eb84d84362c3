// The service's side of the HTTP API: what src/http's routes call. It knows where a job is
// (queued file, claim, published result) and turns that into a JobView; src/http never touches
// spool files itself. Finished jobs are indexed in memory (loaded at start, kept current from the
// service's events) so a listing over 10,000 results reads no files.
import { lstat, readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Settings } from '../config.js';
import { JrError } from '../errors.js';
import { resultFileName, type FinalStatus, type JobStatus, type ResultForm } from '../spool/record.js';
import { claimPaths, isJobId, RUNNING, type Lease } from '../spool/claim.js';
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

interface Finished { st: JobStatus; dir: string }

export interface ServiceLink {
  settings: Settings;
  uploads: Uploads;
}

/** Job lookups and listings for the API. */
export class JobsApi {
  private readonly finished = new Map<string, Finished>();
  /** Finished ids, newest first. */
  private order: string[] = [];
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
        if (st) all.push({ st, dir });
      }
    }
    all.sort((a, b) => b.st.finishedAt.localeCompare(a.st.finishedAt));
    for (const e of all) if (!this.finished.has(e.st.id)) this.finished.set(e.st.id, e);
    this.order = [...this.finished.keys()];
  }

  /** A result was published (the service's `finished` event): index its NAME.json. */
  async published(jsonPath: string): Promise<JobStatus | null> {
    const st = await readStatus(jsonPath);
    if (!st || this.finished.has(st.id)) return st;
    this.finished.set(st.id, { st, dir: path.dirname(jsonPath) });
    this.order.unshift(st.id);
    return st;
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
    for (const { st } of this.finished.values()) byStatus[st.status] = (byStatus[st.status] ?? 0) + 1;
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
    const fin = want('finished')
      ? this.order.filter((id) => okOwner(id) && (!q.status || q.status.includes(this.finished.get(id)!.st.status)))
      : [];
    const total = live.length + fin.length;
    const page: JobView[] = live.slice(q.offset, q.offset + q.limit);
    const from = Math.max(0, q.offset - live.length);
    for (const id of fin.slice(from, from + q.limit - page.length)) page.push(this.finishedView(this.finished.get(id)!));
    return { jobs: page, total };
  }

  /** One job by id, live while it runs; null when unknown. */
  async get(id: string): Promise<JobView | null> {
    if (!isJobId(id)) return null;
    const done = this.finished.get(id);
    if (done) return this.finishedView(done);
    const live = await this.liveJobs();
    return live.find((j) => j.id === id) ?? null;
  }

  /** Where job `id`'s console log is; null when the job is unknown. */
  async logSource(id: string): Promise<LogSource | null> {
    if (!isJobId(id)) return null;
    const done = this.finished.get(id);
    if (done) return { kind: 'final', file: path.join(done.dir, `${done.st.publishedAs}.log`), status: done.st };
    const dir = path.join(this.l.settings.queue, RUNNING, id);
    if (await lstat(claimPaths(dir).lease).then(() => true, () => false)) return { kind: 'live', file: claimPaths(dir).log };
    // Not claimed yet (an upload waiting in queue/), or between its claim being dropped and its
    // result being indexed: an upload we know of has no log yet. Called every 100 ms by every
    // follower, so it reads nothing more (the follower gives up on an id unknown for 10 s).
    return this.owners.has(id) ? { kind: 'none' } : null;
  }

  /** The published result image of a finished job (only a VM's work image, never the input kept as evidence). */
  /** A finished job's published result: the image, or its /job/output as a .tar.xz ("publish": "output"). */
  resultFile(id: string): { file: string; name: string; form: ResultForm; status: JobStatus } {
    const done = isJobId(id) ? this.finished.get(id) : undefined;
    if (!done) throw new JrError('JR_E_NOT_FOUND', `no finished job ${id}`);
    if (!done.st.output) throw new JrError('JR_E_NOT_FOUND', `job ${id} has no result (it ended ${done.st.status} before it ran)`);
    const form = done.st.output.form ?? 'image';
    const name = resultFileName(done.st.publishedAs, form);
    return { file: path.join(done.dir, name), name, form, status: done.st };
  }

  private finishedView({ st }: Finished): JobView {
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
    for (const id of await readdir(path.join(s.queue, RUNNING)).catch(() => [] as string[])) {
      if (!isJobId(id)) continue;
      const dir = path.join(s.queue, RUNNING, id);
      const lease = await readFile(claimPaths(dir).lease, 'utf8').then((t) => JSON.parse(t) as Lease, () => null);
      if (lease && lease.id === id) claimed.push({ lease, dir });
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
      if (!sub) continue;
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
  try {
    const st = JSON.parse(await readFile(file, 'utf8')) as JobStatus;
    return typeof st.id === 'string' && typeof st.finishedAt === 'string' && typeof st.publishedAs === 'string' ? st : null;
  } catch { return null; }
}
