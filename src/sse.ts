// Reading a server-sent event stream (the API's `?follow=1` log): text in, whole events out.
// Blocks end at a blank line; `:` lines are comments; "field: value" loses one leading space.

export interface SseEvent { id: string | null; event: string; data: string }

/** Splits a text/event-stream into events; blocks without a data line (heartbeats) are skipped. */
export class SseDecoder {
  private buf = '';

  /** Feed the next chunk of the stream; returns the events it completed. */
  feed(text: string): SseEvent[] {
    this.buf += text;
    const out: SseEvent[] = [];
    let i: number;
    while ((i = this.buf.indexOf('\n\n')) >= 0) {
      const block = this.buf.slice(0, i);
      this.buf = this.buf.slice(i + 2);
      const ev: SseEvent = { id: null, event: 'message', data: '' };
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'id') ev.id = value;
        else if (field === 'event') ev.event = value;
        else if (field === 'data') data.push(value);
      }
      if (data.length === 0) continue;
      ev.data = data.join('\n');
      out.push(ev);
    }
    return out;
  }
}
