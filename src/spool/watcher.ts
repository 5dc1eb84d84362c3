// Intake: chokidar events plus a periodic full rescan (events can be lost or come out of order),
// and a settle check so a file still being copied is not claimed. chokidar is imported only here.
import { watch, type FSWatcher } from 'chokidar';
import { lstat, readdir } from 'node:fs/promises';
import path from 'node:path';
import { isIgnored } from './names.js';

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

  private async settle(file: string): Promise<void> {
    const p = path.join(this.o.dir, file);
    const first = await lstat(p).catch(() => null);
    if (!first) return;
    await new Promise<void>((resolve) => this.pending.set(file, setTimeout(resolve, this.o.settleMs)));
    this.pending.delete(file);
    if (this.closed) return;
    const second = await lstat(p).catch(() => null);
    if (!second) return;
    if (second.size !== first.size || second.mtimeMs !== first.mtimeMs) { this.consider(file); return; }
    this.o.onReady({ file, mtime: second.mtime });
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    for (const t of this.pending.values()) clearTimeout(t);
    this.pending.clear();
    await this.watcher?.close();
  }
}
