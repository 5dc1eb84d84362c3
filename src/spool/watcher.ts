// Intake: chokidar events plus a periodic full rescan (events can be lost or come out of order),
// and a settle check so a file still being copied is not claimed. chokidar is imported only here.
// Names are read as bytes: a name that is not valid UTF-8 cannot be named by a Node string (it
// decodes lossily, so rename/lstat of that string fail and the file would sit in the queue forever);
// such an entry is first renamed, inside the queue, to a UTF-8 name that escapes the bad bytes.
import { entryExists } from '../fsutil.js';
import { watch, type FSWatcher } from 'chokidar';
import type { Stats } from 'node:fs';
import { lstat, readdir, rename } from 'node:fs/promises';
import path from 'node:path';
import { isIgnored, isSubmissionName, isUtf8Name, safeQueueName, showName } from './names.js';
import { scanWriters } from './writers.js';

const QUICK_LOOK_MS = 200;

function sameContent(a: Stats, b: Stats): boolean {
  return a.size === b.size && a.mtimeMs === b.mtimeMs && a.ino === b.ino;
}

export interface Candidate {
  file: string;
  mtime: Date;
  /** The name as submitted when it differs from `file` (undecodable bytes shown as \xNN). */
  submitted?: string;
}

export interface WatcherOptions {
  dir: string;
  settleMs: number;
  rescanMs: number;
  /** A file that is stable and ready to claim. */
  onReady: (c: Candidate) => void;
  onError: (e: unknown) => void;
  /** An undecodable name was renamed inside the queue (for the log). */
  onRenamed?: (from: string, to: string) => void;
}

/**
 * Watches `dir` (not recursively). A file is ready when its size and mtime stayed the same for
 * settleMs; every entry that is not ignored is reported (the service decides what is acceptable).
 */
export class QueueWatcher {
  private watcher: FSWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly pending = new Map<string, NodeJS.Timeout>();
  /** Queue names we gave to undecodable entries -> the name as submitted. */
  private readonly renamed = new Map<string, string>();
  private closed = false;

  constructor(private readonly o: WatcherOptions) {}

  async start(): Promise<void> {
    this.watcher = watch(this.o.dir, {
      depth: 0, ignoreInitial: true, followSymlinks: false, alwaysStat: false,
      // A name chokidar got lossily decoded (U+FFFD) cannot be used by it: lstat of that string
      // fails (ENAMETOOLONG for a long one, which also kept chokidar from ever becoming ready).
      // The rescan, which reads names as bytes, takes care of those.
      ignored: (p: string) => p !== this.o.dir && (isIgnored(path.basename(p)) || path.basename(p).includes('\ufffd')),
    });
    this.watcher.on('add', (p) => this.consider(path.basename(p)));
    this.watcher.on('change', (p) => this.consider(path.basename(p)));
    // Events are only a shortcut: if chokidar fails before it is ready, the periodic rescan still
    // finds everything, so start-up must not wait for a 'ready' that may never come.
    await new Promise<void>((resolve) => {
      this.watcher!.once('ready', () => resolve());
      this.watcher!.once('error', () => resolve());
      this.watcher!.on('error', (e) => this.o.onError(e));
    });
    await this.rescan();
    this.timer = setInterval(() => { void this.rescan().catch(this.o.onError); }, this.o.rescanMs);
  }

  /** Look at every entry in the queue now. Returns how many entries are waiting to settle or be claimed. */
  async rescan(): Promise<number> {
    const names = await readdir(this.o.dir, { encoding: 'buffer' });
    let n = 0;
    for (const raw of names) {
      let f = raw.toString('utf8');
      if (isIgnored(f)) continue;
      if (!isUtf8Name(raw)) {
        if (!isSubmissionName(f)) continue; // not a job: left alone like any other non-job file
        const to = await this.renameUndecodable(raw).catch((e: unknown) => { this.o.onError(e); return null; });
        if (!to) continue;
        f = to;
      }
      n++;
      this.consider(f);
    }
    return n;
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

  /** Files seen but not yet reported ready. */
  get settling(): number {
    return this.pending.size;
  }

  private consider(file: string): void {
    if (this.closed || this.pending.has(file) || isIgnored(file)) return;
    void this.settle(file);
  }

  /**
   * Ready when unchanged across a short look and no process holds it open for writing (a file
   * renamed in complete is claimed at once); when writers cannot all be seen (not root), it must
   * stay unchanged for the whole settle period instead (a slow `cp` keeps changing it).
   */
  private async settle(file: string): Promise<void> {
    const p = path.join(this.o.dir, file);
    const first = await lstat(p).catch(() => null);
    if (!first) return;
    await this.pause(file, Math.min(QUICK_LOOK_MS, this.o.settleMs));
    if (this.closed) return;
    let second = await lstat(p).catch(() => null);
    if (!second) return;
    if (!sameContent(first, second)) { this.consider(file); return; }
    const writers = first.isFile() ? await scanWriters(p) : { busy: false, complete: true };
    if (writers.busy || !writers.complete) {
      await this.pause(file, this.o.settleMs);
      if (this.closed) return;
      const third = await lstat(p).catch(() => null);
      if (!third) return;
      if (!sameContent(second, third) || (await scanWriters(p)).busy) { this.consider(file); return; }
      second = third;
    }
    const submitted = this.renamed.get(file);
    this.renamed.delete(file);
    this.o.onReady({ file, mtime: second.mtime, ...(submitted !== undefined ? { submitted } : {}) });
  }

  private async pause(file: string, ms: number): Promise<void> {
    await new Promise<void>((resolve) => this.pending.set(file, setTimeout(resolve, ms)));
    this.pending.delete(file);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    for (const t of this.pending.values()) clearTimeout(t);
    this.pending.clear();
    await this.watcher?.close();
  }
}
