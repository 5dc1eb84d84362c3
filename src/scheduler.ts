// Concurrency: how many jobs run at once (p-queue; imported nowhere else). Knows which claims are
// in flight so a job is never scheduled twice.
import PQueue from 'p-queue';

/** Runs tasks keyed by id, at most `concurrency` at a time; a key already pending is ignored. */
export class Scheduler {
  private readonly queue: PQueue;
  private readonly keys = new Set<string>();

  constructor(concurrency: number) {
    this.queue = new PQueue({ concurrency });
  }

  /** Schedule `task` under `key` unless that key is already queued or running. */
  add(key: string, task: () => Promise<void>): boolean {
    if (this.keys.has(key)) return false;
    this.keys.add(key);
    void this.queue.add(async () => {
      try { await task(); } finally { this.keys.delete(key); }
    });
    return true;
  }

  has(key: string): boolean {
    return this.keys.has(key);
  }

  /** Jobs queued or running. */
  get size(): number {
    return this.keys.size;
  }

  get running(): number {
    return this.queue.pending;
  }

  /** Stop starting new tasks (running ones continue). */
  pause(): void {
    this.queue.pause();
  }

  /** Drop tasks not yet started. */
  clearPending(): void {
    this.queue.clear();
  }

  /** Resolves when nothing is queued or running. */
  onIdle(): Promise<void> {
    return this.queue.onIdle();
  }
}
