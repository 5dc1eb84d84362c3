// Concurrency: how many jobs run at once (p-queue; imported nowhere else). Knows which claims are
// in flight so a job is never scheduled twice.
import PQueue from 'p-queue';

/** Runs tasks keyed by id, at most `concurrency` at a time; a key already pending is ignored. */
export class Scheduler {
  private readonly queue: PQueue;
  private readonly keys = new Set<string>();
  /** Keys whose task has started (the rest of `keys` is waiting). */
  private readonly started = new Set<string>();

  constructor(concurrency: number) {
    this.queue = new PQueue({ concurrency });
  }

  /** Schedule `task` under `key` unless that key is already queued or running. */
  add(key: string, task: () => Promise<void>): boolean {
    if (this.keys.has(key)) return false;
    this.keys.add(key);
    // Tasks report their own failures (Service.schedule catches everything); a rejection that got
    // through must not become an unhandled rejection, which would end the whole process.
    this.queue.add(async () => {
      this.started.add(key);
      try { await task(); } finally { this.keys.delete(key); this.started.delete(key); }
    }).catch(() => undefined);
    return true;
  }

  /** Jobs queued or running. */
  get size(): number {
    return this.keys.size;
  }

  /** Tasks running now. */
  get running(): number {
    return this.queue.pending;
  }

  /** Drop tasks not yet started; their keys are free again (size counts only what still runs). */
  clearPending(): void {
    this.queue.clear();
    for (const k of this.keys) if (!this.started.has(k)) this.keys.delete(k);
  }

  /** Resolves when nothing is queued or running. */
  onIdle(): Promise<void> {
    return this.queue.onIdle();
  }
}
