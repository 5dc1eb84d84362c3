// Pure checks of the undecodable-name handling the service relies on (no processes, milliseconds).
import { describe, expect, it } from 'vitest';
import { isUtf8Name, parseSubmission, safeQueueName, showName } from '../../src/spool/names.js';
import { entryProblem } from '../../src/spool/reject.js';
import type { Stats } from 'node:fs';

const b = (...parts: Array<string | number[]>): Buffer => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))));

describe('names that are not UTF-8', () => {
  it('are told apart from valid ones, including multi-byte characters and a lone continuation byte', () => {
    expect(isUtf8Name(b('café-日本.img'))).toBe(true);
    expect(isUtf8Name(b('caf', [0xe9], '.img'))).toBe(false);
    expect(isUtf8Name(b('x', [0x80], '.img'))).toBe(false);
    expect(isUtf8Name(b([0xed, 0xa0, 0x80], '.img'))).toBe(false); // an encoded surrogate is not UTF-8
  });

  it('are shown with \\xNN for the bad bytes only, and renamed to %XX names that keep the suffix', () => {
    const raw = b('caf', [0xe9], '-日-', [0xff], '.img.xz');
    expect(showName(raw)).toBe('caf\\xe9-日-\\xff.img.xz');
    expect(safeQueueName(raw)).toBe('caf%E9-日-%FF.img.xz');
    expect(safeQueueName(raw, 2)).toBe('caf%E9-日-%FF-2.img.xz');
    expect(parseSubmission(safeQueueName(raw))).toMatchObject({ compressed: true, name: 'caf%E9-日-%FF' });
  });

  it('are renamed within NAME_MAX even when every byte needs escaping, never splitting an escape', () => {
    const raw = b(Array(251).fill(0xff), '.img');
    const safe = safeQueueName(raw, 7);
    expect(Buffer.byteLength(safe)).toBeLessThanOrEqual(255);
    expect(safe).toMatch(/^(%FF)+-7\.img$/);
  });
});

describe('entry screening', () => {
  const st = (o: Partial<Record<'file' | 'dir' | 'link', boolean>> & { nlink?: number }): Stats => ({
    isFile: () => !!o.file, isDirectory: () => !!o.dir, isSymbolicLink: () => !!o.link, isFIFO: () => false, isSocket: () => false,
    isBlockDevice: () => false, isCharacterDevice: () => false, nlink: o.nlink ?? 1,
  }) as unknown as Stats;

  it('accepts only a regular file with a single link', () => {
    expect(entryProblem(st({ file: true }))).toBeNull();
    expect(entryProblem(st({ file: true, nlink: 3 }))).toMatch(/3 hard links/);
    expect(entryProblem(st({ link: true }))).toMatch(/symbolic link/);
    expect(entryProblem(st({ dir: true }))).toMatch(/directory/);
  });
});
