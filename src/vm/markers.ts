// Parses the guest console for construir's marker lines (see guest-config/construir):
//   @@construir:<nonce>:start@@ | exit=<n> | bad-image=<why> | end
// and the initramfs's own failure line @@construir-initramfs:<why>@@. Lines are split here, with a
// bound on line length so a console flood without newlines cannot grow memory.

export type MarkerEvent =
  | { kind: 'start' }
  | { kind: 'exit'; code: number }
  | { kind: 'bad-image'; reason: string }
  | { kind: 'end' }
  | { kind: 'initramfs-failed'; reason: string };

const MAX_LINE = 4096;

/** Incremental line splitter + marker parser; `feed` returns the marker events found in the chunk. */
export class MarkerParser {
  private partial = '';
  private readonly re: RegExp;
  /** The last non-empty console line seen (trimmed, capped), for status displays and reasons. */
  lastLine = '';

  constructor(nonce: string) {
    if (!/^[A-Za-z0-9]+$/.test(nonce)) throw new Error(`Expected an alphanumeric nonce, got ${JSON.stringify(nonce)}`);
    this.re = new RegExp(`^@@construir:${nonce}:(start|end|exit=(\\d{1,3})|bad-image=([A-Za-z0-9_-]{1,64}))@@$`);
  }

  feed(chunk: Buffer | string): MarkerEvent[] {
    const text = this.partial + (typeof chunk === 'string' ? chunk : chunk.toString('latin1'));
    const lines = text.split('\n');
    this.partial = lines.pop() ?? '';
    // A line longer than MAX_LINE cannot be a marker: drop it rather than buffer it forever.
    if (this.partial.length > MAX_LINE) this.partial = this.partial.slice(-MAX_LINE);
    const events: MarkerEvent[] = [];
    for (const raw of lines) {
      const line = raw.replace(/\r$/, '');
      const ev = this.parseLine(line);
      if (ev) events.push(ev);
      else if (line.trim()) this.lastLine = line.trim().slice(0, 200);
    }
    return events;
  }

  private parseLine(line: string): MarkerEvent | null {
    if (!line.startsWith('@@construir')) return null;
    const m = this.re.exec(line);
    if (m) {
      if (m[1] === 'start') return { kind: 'start' };
      if (m[1] === 'end') return { kind: 'end' };
      if (m[2] !== undefined) {
        const code = Number(m[2]);
        return code <= 255 ? { kind: 'exit', code } : null;
      }
      if (m[3] !== undefined) return { kind: 'bad-image', reason: m[3] };
    }
    const i = /^@@construir-initramfs:([A-Za-z0-9_-]{1,64})@@$/.exec(line);
    if (i) return { kind: 'initramfs-failed', reason: i[1]! };
    return null;
  }
}
