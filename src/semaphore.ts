// At most N async tasks at a time, started in the order they asked; a task that fails frees its
// place like one that succeeds. With N = 1 it serialises (publishing, screening claimed inputs).

export class Semaphore {
  private readonly waiting: (() => void)[] = [];
  constructor(private free: number) {}

  /** Run `fn` once a place is free; resolves or rejects with it. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free--; else await new Promise<void>((r) => this.waiting.push(r));
    try { return await fn(); } finally {
      const next = this.waiting.shift();
      if (next) next(); else this.free++;
    }
  }
}

/**
 * Run `fn` on every item, at most `n` at a time (a fixed pool of workers: memory stays bounded
 * however many items there are). Rejects with the first failure, after the running ones settle.
 */
export async function mapLimit<T>(items: Iterable<T>, n: number, fn: (item: T) => Promise<void>): Promise<void> {
  const it = items[Symbol.iterator]();
  let failed: { e: unknown } | null = null;
  const worker = async (): Promise<void> => {
    for (let r = it.next(); !r.done && !failed; r = it.next()) {
      try { await fn(r.value); } catch (e) { failed ??= { e }; }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, n) }, worker));
  if (failed) throw (failed as { e: unknown }).e;
}

/**
 * Shared or exclusive access, in arrival order: shared holders run together, an exclusive one
 * alone (and, once waiting, before shared ones that come after it: no writer starves).
 */
export class RwLock {
  private shared = 0;
  private exclusive = false;
  private readonly waiting: Array<{ exclusive: boolean; go: () => void }> = [];

  /** Run `fn` alongside other shared holders. */
  read<T>(fn: () => Promise<T>): Promise<T> { return this.run(false, fn); }

  /** Run `fn` with no other holder. */
  write<T>(fn: () => Promise<T>): Promise<T> { return this.run(true, fn); }

  private async run<T>(exclusive: boolean, fn: () => Promise<T>): Promise<T> {
    if (this.waiting.length > 0 || !this.free(exclusive)) await new Promise<void>((go) => this.waiting.push({ exclusive, go }));
    else this.take(exclusive);
    try { return await fn(); } finally {
      if (exclusive) this.exclusive = false; else this.shared--;
      while (this.waiting.length > 0 && this.free(this.waiting[0]!.exclusive)) {
        const w = this.waiting.shift()!;
        this.take(w.exclusive);
        w.go();
      }
    }
  }

  private free(exclusive: boolean): boolean { return !this.exclusive && (!exclusive || this.shared === 0); }
  private take(exclusive: boolean): void { if (exclusive) this.exclusive = true; else this.shared++; }
}
