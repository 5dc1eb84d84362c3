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
