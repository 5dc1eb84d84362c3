// Intake: chokidar events plus a periodic full rescan (events can be lost or come out of order),
// and a settle check so a file still being copied is not claimed. chokidar is imported only here.
import { watch, type FSWatcher } from 'chokidar';
import type { Stats } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import path from 'node:path';
import { isIgnored } from './names.js';
import { scanWriters } from './writers.js';

const QUICK_LOOK_MS = 200;

function sameContent(a: Stats, b: Stats): boolean {
  return a.size === b.size && a.mtimeMs === b.mtimeMs && a.ino === b.ino;
}

export interface Candidate {
  file: string;
  mtime: Date;
}

export interface WatcherOptions {
  dir: string;
  settleMs: number;
  rescanMs: number;
  /** A file that is stable and ready to claim. */
  onReady: (c: Candidate) => void;
  onError: (e: unknown) => void;
}

/**
 * Watches `dir` (not recursively). A file is ready when its size and mtime stayed the same for
 * settleMs; every entry that is not ignored is reported (the service decides what is acceptable).
 */
export class QueueWatcher {
  private watcher: FSWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly pending = new Map<string, NodeJS.Timeout>();
  private closed = false;

  constructor(private readonly o: WatcherOptions) {}

  async start(): Promise<void> {
    this.watcher = watch(this.o.dir, {
      depth: 0, ignoreInitial: true, followSymlinks: false, alwaysStat: false,
      ignored: (p: string) => p !== this.o.dir && isIgnored(path.basename(p)),
    });
    this.watcher.on('add', (p) => this.consider(path.basename(p)));
    this.watcher.on('change', (p) => this.consider(path.basename(p)));
    this.watcher.on('error', (e) => this.o.onError(e));
    await new Promise<void>((resolve) => this.watcher!.once('ready', () => resolve()));
    await this.rescan();
    this.timer = setInterval(() => { void this.rescan().catch(this.o.onError); }, this.o.rescanMs);
  }

  /** Look at every entry in the queue now. Returns how many entries are waiting to settle or be claimed. */
  async rescan(): Promise<number> {
    const names = await readdir(this.o.dir);
    let n = 0;
    for (const f of names) {
      if (isIgnored(f)) continue;
      n++;
      this.consider(f);
    }
    return n;
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
    this.o.onReady({ file, mtime: second.mtime });
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
