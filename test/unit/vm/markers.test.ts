import { describe, expect, it } from 'vitest';
import { MarkerParser } from '../../../src/vm/markers.js';

describe('console marker parser', () => {
  it('finds markers with our nonce, across chunk boundaries', () => {
    const p = new MarkerParser('n0nce');
    expect(p.feed('boot noise\n@@constr')).toEqual([]);
    expect(p.feed('uir:n0nce:start@@\nhello\n@@construir:n0nce:exit=3@@\r\n@@construir:n0nce:end@@\n')).toEqual([
      { kind: 'start' }, { kind: 'exit', code: 3 }, { kind: 'end' },
    ]);
    expect(p.lastLine).toBe('hello');
  });

  it('ignores markers with another nonce, out-of-range codes, and markers not alone on their line', () => {
    const p = new MarkerParser('good');
    expect(p.feed('@@construir:evil:exit=0@@\n@@construir:good:exit=256@@\nxx @@construir:good:exit=0@@\n')).toEqual([]);
  });

  it('reports bad images and initramfs failures', () => {
    const p = new MarkerParser('k');
    expect(p.feed('@@construir:k:bad-image=mount-failed@@\n@@construir-initramfs:no-root-device@@\n')).toEqual([
      { kind: 'bad-image', reason: 'mount-failed' }, { kind: 'initramfs-failed', reason: 'no-root-device' },
    ]);
  });

  it('keeps memory bounded when the guest prints without newlines', () => {
    const p = new MarkerParser('k');
    for (let i = 0; i < 100; i++) p.feed('x'.repeat(100_000));
    expect(p.feed('\n@@construir:k:exit=7@@\n')).toEqual([{ kind: 'exit', code: 7 }]);
    expect((p as unknown as { partial: string }).partial.length).toBeLessThanOrEqual(4096);
  });

  it('refuses a nonce that would change the regular expression', () => {
    expect(() => new MarkerParser('a.*')).toThrow(/alphanumeric/);
  });
});
