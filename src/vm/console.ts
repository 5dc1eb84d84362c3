// Console capture with a byte cap: everything the guest prints goes to the log file until `cap`
// bytes, then one truncation notice; bytes past the cap are counted, not stored.
import { createWriteStream, type WriteStream } from 'node:fs';
import { once } from 'node:events';

/** Writes a capped console log; `write` never throws on the hot path, `close` flushes. */
export class ConsoleLog {
  private out: WriteStream | null;
  written = 0;
  dropped = 0;

  constructor(path: string | null, private readonly cap: number) {
    this.out = path ? createWriteStream(path, { flags: 'w', mode: 0o644 }) : null;
    this.out?.on('error', () => { this.out = null; });
  }

  get truncated(): boolean {
    return this.dropped > 0;
  }

  write(chunk: Buffer): void {
    const room = this.cap - this.written;
    if (room >= chunk.length) {
      this.out?.write(chunk);
      this.written += chunk.length;
      return;
    }
    if (room > 0) {
      this.out?.write(chunk.subarray(0, room));
      this.written += room;
    }
    if (this.dropped === 0) this.out?.write(`\n[jobrunner: console log truncated at ${this.cap} bytes]\n`);
    this.dropped += chunk.length - Math.max(room, 0);
  }

  async close(): Promise<void> {
    const out = this.out;
    if (!out) return;
    if (this.dropped > 0) out.write(`[jobrunner: ${this.dropped} more console bytes were dropped]\n`);
    out.end();
    await once(out, 'close').catch(() => undefined);
  }
}
