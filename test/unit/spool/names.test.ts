import { describe, expect, it } from 'vitest';
import { isIgnored, parseSubmission, resultName } from '../../../src/spool/names.js';

describe('submission names', () => {
  it('accepts *.img and *.img.xz, with an optional @BASE', () => {
    expect(parseSubmission('hello.img')).toEqual({ file: 'hello.img', name: 'hello', base: null, compressed: false });
    expect(parseSubmission('hello@trixie.img.xz')).toEqual({ file: 'hello@trixie.img.xz', name: 'hello', base: 'trixie', compressed: true });
    expect(parseSubmission('notes.txt')).toBeNull();
    expect(parseSubmission('x.img.gz')).toBeNull();
  });

  it('ignores dotfiles and in-progress uploads', () => {
    expect(isIgnored('.hello.img')).toBe(true);
    expect(isIgnored('hello.img.part')).toBe(true);
    expect(parseSubmission('.running')).toBeNull();
    expect(parseSubmission('hello.img.part')).toBeNull();
  });

  it('makes hostile names safe to publish under', () => {
    expect(resultName('-rf')).toBe('_rf');
    expect(resultName('..')).toBe('__');
    expect(resultName('a\nb')).toBe('a_b');
    expect(Buffer.byteLength(resultName('é'.repeat(200)))).toBeLessThanOrEqual(200);
    expect(parseSubmission('.img')).toBeNull();
    expect(parseSubmission('@base.img')).toMatchObject({ name: '@base', base: null });
  });
});

describe('publish temp names', () => {
  it('are unique even for the same result name in the same millisecond', async () => {
    const { tempName } = await import('../../../src/fsutil.js');
    const names = new Set(Array.from({ length: 1000 }, () => tempName('/d', 'a_b.img')));
    expect(names.size).toBe(1000);
    for (const n of names) expect(n).toMatch(/^\/d\/\.a_b\.img\.\d+\.[0-9a-z]+\.[0-9a-f]{12}\.tmp$/);
  });
});
