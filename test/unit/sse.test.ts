// The SSE decoder shared by `jobrunner submit --follow` and the API tests.
import { describe, expect, it } from 'vitest';
import { SseDecoder } from '../../src/sse.js';

describe('SseDecoder', () => {
  it('joins events split across chunks, skips comments and data-less blocks, keeps colons in values', () => {
    const d = new SseDecoder();
    expect(d.feed(': heartbeat\n\nid: 12\nevent: log\ndata: a: b\ndata:  two spaces\n')).toEqual([]);
    expect(d.feed('\nid: 40\n\nevent: end\ndata: {"status":"succeeded"}\n\n')).toEqual([
      { id: '12', event: 'log', data: 'a: b\n two spaces' },
      { id: null, event: 'end', data: '{"status":"succeeded"}' },
    ]);
  });
});
