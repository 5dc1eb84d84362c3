// Blocks finish out of order (parallel compressors) but must be written in order. This window
// holds the unfinished and not-yet-written ones and bounds the memory they pin.
import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import type { EncodedBlock } from './blocks.js';
import type { BlockLayout } from './verify.js';

/** Appends bytes to a file at increasing offsets, hashing them (sha256) as it goes. */
export class HashingWriter {
  pos = 0;
  private readonly hash = createHash('sha256');
  constructor(private readonly fh: FileHandle) {}

  /** Write `parts` in order; writev in batches (IOV_MAX is 1024 on Linux). */
  async write(parts: readonly Buffer[]): Promise<void> {
    for (let i = 0; i < parts.length; i += 512) {
      const batch = parts.slice(i, i + 512);
      for (const b of batch) this.hash.update(b);
      const len = batch.reduce((n, b) => n + b.length, 0);
      const { bytesWritten } = await this.fh.writev(batch, this.pos);
      // A short writev is rare (disk full reports an error instead); fall back to plain writes.
      if (bytesWritten < len) await this.finishShort(Buffer.concat(batch), bytesWritten);
      this.pos += len;
    }
  }

  private async finishShort(b: Buffer, done: number): Promise<void> {
    for (let off = done; off < b.length;) off += (await this.fh.write(b, off, b.length - off, this.pos + off)).bytesWritten;
  }

  /** Hex sha256 of everything written. */
  digest(): string { return this.hash.digest('hex'); }
}

/** In-order sink for encoded blocks, with the window counted in pinned source-buffer bytes. */
export class BlockWindow {
  /** Every block as written, in order: the index, the counts and verifyWritten come from it. */
  readonly layout: BlockLayout[] = [];
  private readonly jobs: { job: Promise<EncodedBlock>; pin: ArrayBufferLike | null }[] = [];
  private readonly pins = new Map<ArrayBufferLike, number>();
  private pinnedBytes = 0;

  constructor(private readonly out: HashingWriter, private readonly maxBytes: number, private readonly maxJobs: number,
    private readonly release: (pin: ArrayBufferLike) => void = () => {}) {}

  /** Add a job whose data lives in `pin` (a read buffer; null for zero blocks); may write blocks to make room. */
  async push(job: Promise<EncodedBlock>, pin: ArrayBufferLike | null): Promise<void> {
    job.catch(() => {}); // observed when written; this only stops an "unhandled" report meanwhile
    this.jobs.push({ job, pin });
    if (pin) {
      // Segments are views into a whole read buffer: memory is held per buffer, not per segment.
      const n = this.pins.get(pin) ?? 0;
      if (n === 0) this.pinnedBytes += pin.byteLength;
      this.pins.set(pin, n + 1);
    }
    while (this.jobs.length > 0 && (this.pinnedBytes > this.maxBytes || this.jobs.length > this.maxJobs)) await this.writeOne();
  }

  /** Write every remaining block, in order. */
  async flush(): Promise<void> {
    while (this.jobs.length > 0) await this.writeOne();
  }

  /** Settle every job (after a failure), so no child or promise outlives the call. */
  async settle(): Promise<void> {
    await Promise.allSettled(this.jobs.map((j) => j.job));
  }

  private async writeOne(): Promise<void> {
    const { job, pin } = this.jobs[0]!;
    const b = await job;
    this.jobs.shift();
    this.layout.push({ kind: b.kind, size: b.size, record: b.record, offset: b.offset });
    await this.out.write(b.parts); // stored blocks' parts are views of the pinned buffer: write first
    if (pin) {
      const n = this.pins.get(pin)! - 1;
      if (n > 0) { this.pins.set(pin, n); return; }
      this.pins.delete(pin);
      this.pinnedBytes -= pin.byteLength;
      this.release(pin);
    }
  }
}
