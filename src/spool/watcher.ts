// Intake: scans of the queue directory, one at a time, started by inotify events (a shortcut),
// a periodic rescan (events can be lost), a retry for files still settling, and the service when
// it can take more. A scan reads the directory as a stream, in windows of at most WINDOW names,
// settles each window at once (spool/settle.ts) and hands the ready files over only as far as the
// service has room: the rest stay as files in queue/, and the next scan resumes the same pass where
// this one stopped (no name starves behind a large queue). Memory is bounded by WINDOW, whatever
// the queue holds. (chokidar was dropped: it re-read and stat'ed the whole directory on every
// event, O(n) per file in a flood, and kept a name set of it.)
// Names are read as bytes: a name that is not valid UTF-8 cannot be named by a Node string (it
// decodes lossily, so rename/lstat of that string fail and the file would sit in the queue forever);
// such an entry is first renamed, inside the queue, to a UTF-8 name that escapes the bad bytes.
import { entryExists } from '../fsutil.js';
import { watch, type Dir, type FSWatcher } from 'node:fs';
import { opendir, rename } from 'node:fs/promises';
import path from 'node:path';
import { isIgnored, isSubmissionName, isUtf8Name, safeQueueName, showName } from './names.js';
import { settleWindow, type Sightings } from './settle.js';

/** Names settled together (one writer scan each): bounds what a scan holds in memory. */
const WINDOW = 16384;
// A burst of events (a flood of files) becomes one scan, started this long after the first event.
const EVENT_COALESCE_MS = 20;

export interface Candidate {
  file: string;
  mtime: Date;
  /** Size and plainness when it settled (a hint for choosing the intake path; never trusted as the claim's). */
  size?: number;
  plain?: boolean;
  /** The name as submitted when it differs from `file` (undecodable bytes shown as \xNN). */
  submitted?: string;
}

export interface WatcherOptions {
  dir: string;
  settleMs: number;
  rescanMs: number;
  /** How many more files the service takes now; 0 leaves the queue alone until rescan(). */
  capacity: () => number;
  /** Files that are stable and ready to claim; resolves with those it did not take (kept queued). */
  onReady: (batch: Candidate[]) => Promise<Candidate[]>;
  onError: (e: unknown) => void;
  /** An undecodable name was renamed inside the queue (for the log). */
  onRenamed?: (from: string, to: string) => void;
}

/** Watches `dir` (not recursively) and reports submission entries (*.img, *.img.xz) once they settle. */
export class QueueWatcher {
  private events: FSWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;
  private soonTimer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private scanning: Promise<void> | null = null;
  private again = false;
  private closed = false;
  /** The directory stream of the current pass; null between passes. */
  private pass: Dir | null = null;
  /** Names looked at and not handed over yet: looked at again first by the next scan (<= WINDOW). */
  private readonly carry = new Set<string>();
  private readonly seen: Sightings = new Map();
  /** Queue names we gave to undecodable entries -> the name as submitted. */
  private readonly renamed = new Map<string, string>();
  /** Scans run and windows settled (each window is one /proc walk for all its files): for benches and tests. */
  readonly stats = { scans: 0, windows: 0, handed: 0 };

  constructor(private readonly o: WatcherOptions) {}

  async start(): Promise<void> {
    // inotify on the directory only: an event (whatever its name says, which may be decoded
    // lossily) just asks for a scan soon. No per-file state is kept, whatever the queue holds.
    try {
      this.events = watch(this.o.dir, { persistent: false }, (_type, name) => {
        if (typeof name === 'string' && isIgnored(name)) return; // our own .running, the lock, *.part
        this.soon();
      });
      this.events.on('error', (e) => this.o.onError(e));
    } catch (e) {
      // No inotify (watch limit reached, a file system without it): the periodic rescan still finds everything.
      this.o.onError(e);
    }
    // The first scan runs in the background: a large queue must not hold up start-up.
    void this.rescan().catch(this.o.onError);
    this.timer = setInterval(() => { void this.rescan().catch(this.o.onError); }, this.o.rescanMs);
  }

  /** Scan now, or once more right after the scan in progress; resolves when that scan is over. */
  rescan(): Promise<void> {
    this.again = true;
    this.scanning ??= this.loop().finally(() => { this.scanning = null; });
    return this.scanning;
  }

  /** True while a scan runs or files looked at wait to settle or for room. */
  get busy(): boolean {
    return this.scanning !== null || this.carry.size > 0;
  }

  private soon(): void {
    if (this.closed || this.soonTimer) return;
    this.soonTimer = setTimeout(() => { this.soonTimer = null; void this.rescan().catch(this.o.onError); }, EVENT_COALESCE_MS);
  }

  private async loop(): Promise<void> {
    while (this.again && !this.closed) {
      this.again = false;
      await this.scanOnce();
    }
  }

  /** One scan: the carried names first, then windows of the pass, while the service has room. */
  private async scanOnce(): Promise<void> {
    this.stats.scans++;
    let batch = new Set(this.carry);
    this.carry.clear();
    let retryMs = Infinity;
    for (;;) {
      if (this.closed) return;
      if (this.o.capacity() <= 0) { for (const f of batch) this.carry.add(f); break; }
      const eof = await this.fill(batch, WINDOW - this.carry.size);
      if (batch.size === 0 && eof) break;
      const settled = await settleWindow(this.o.dir, batch, this.o.settleMs, this.seen);
      this.stats.windows++;
      retryMs = Math.min(retryMs, settled.retryMs);
      for (const f of settled.waiting) this.carry.add(f);
      const ready = settled.ready.map((r) => ({ ...this.candidate(r.file, r.mtime), size: r.size, plain: r.plain }));
      const left = ready.length > 0 && !this.closed ? await this.o.onReady(ready) : [];
      this.stats.handed += ready.length - left.length;
      for (const c of left) this.carry.add(c.file);
      if (left.length > 0) retryMs = Math.min(retryMs, this.o.settleMs); // no room: the service calls rescan() when it has
      batch = new Set();
      if (eof || this.carry.size >= WINDOW) break;
    }
    for (const f of this.seen.keys()) if (!this.carry.has(f)) this.seen.delete(f);
    if (this.carry.size > 0 && retryMs < Infinity) this.retryIn(retryMs);
  }

  /** Read names of the pass into `batch` until it holds `limit`; true at the end of the pass. */
  private async fill(batch: Set<string>, limit: number): Promise<boolean> {
    this.pass ??= await opendir(this.o.dir, { encoding: 'buffer' as BufferEncoding, bufferSize: 256 });
    while (batch.size < limit) {
      const ent = await this.pass.read();
      if (!ent) { await this.pass.close().catch(() => undefined); this.pass = null; return true; }
      const raw = ent.name as unknown as Buffer;
      let f = raw.toString('utf8');
      if (isIgnored(f) || !isSubmissionName(f)) continue; // not a job: left alone like any other file
      if (!isUtf8Name(raw)) {
        const to = await this.renameUndecodable(raw).catch((e: unknown) => { this.o.onError(e); return null; });
        if (!to) continue;
        f = to;
      }
      if (!this.carry.has(f)) batch.add(f);
    }
    return false;
  }

  private candidate(file: string, mtime: Date): Candidate {
    const submitted = this.renamed.get(file);
    this.renamed.delete(file);
    return { file, mtime, ...(submitted !== undefined ? { submitted } : {}) };
  }

  private retryIn(ms: number): void {
    if (this.closed) return;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => { this.retryTimer = null; void this.rescan().catch(this.o.onError); }, ms);
  }

  /** Rename an undecodable entry to a free UTF-8 name in the queue; null when it vanished. */
  private async renameUndecodable(raw: Buffer): Promise<string | null> {
    const from = Buffer.concat([Buffer.from(`${this.o.dir}/`), raw]);
    for (let i = 0; i < 1000; i++) {
      const to = safeQueueName(raw, i);
      // rename() replaces an existing target: never pick a name someone already uses.
      if (await entryExists(path.join(this.o.dir, to))) continue;
      try {
        await rename(from, path.join(this.o.dir, to));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw e;
      }
      this.renamed.set(to, showName(raw));
      this.o.onRenamed?.(showName(raw), to);
      return to;
    }
    throw new Error(`no free queue name for ${showName(raw)}`);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const t of [this.timer, this.soonTimer, this.retryTimer]) if (t) clearTimeout(t);
    await this.scanning?.catch(() => undefined);
    await this.pass?.close().catch(() => undefined);
    this.pass = null;
    this.events?.close();
  }
}

/** How many submission entries `dir` holds (a streamed count: no list is built). */
export async function countSubmissions(dir: string): Promise<number> {
  let n = 0;
  for await (const e of await opendir(dir, { bufferSize: 256 })) if (isSubmissionName(e.name)) n++;
  return n;
}

/** True when `dir` holds at least one submission entry (stops at the first). */
export async function hasSubmission(dir: string): Promise<boolean> {
  const d = await opendir(dir, { bufferSize: 256 });
  try {
    for (let e = await d.read(); e; e = await d.read()) if (isSubmissionName(e.name)) return true;
    return false;
  } finally { await d.close().catch(() => undefined); }
}
