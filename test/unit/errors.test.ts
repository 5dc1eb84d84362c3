// Every error code is declared once (src/errors.ts), thrown somewhere in src/, and documented in
// docs/ERRORS.md; every JR_E_* literal anywhere in src/ is a declared code. A code added by anyone
// is checked the same way: the test reads the sources, it keeps no list of its own.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { JrError, isJrError } from '../../src/errors.js';

const ROOT = path.resolve(__dirname, '../..');
const SRC = path.join(ROOT, 'src');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sources(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

const errorsTs = readFileSync(path.join(SRC, 'errors.ts'), 'utf8');
const union = errorsTs.slice(errorsTs.indexOf('export type ErrorCode'), errorsTs.indexOf(';', errorsTs.indexOf('export type ErrorCode')));
const declared = new Set([...union.matchAll(/'(JR_E_[A-Z_]+)'/g)].map((m) => m[1]!));
const others = sources(SRC).filter((f) => f !== path.join(SRC, 'errors.ts')).map((f) => ({ f, text: readFileSync(f, 'utf8') }));
const docs = readFileSync(path.join(ROOT, 'docs', 'ERRORS.md'), 'utf8');

describe('error codes', () => {
  it('are declared', () => {
    expect(declared.size).toBeGreaterThan(5);
  });

  it('are each thrown somewhere in src/', () => {
    // Thrown directly, or handed to proc.run as the code its failure is reported with.
    const thrown = new Set(others.flatMap(({ text }) => [...text.matchAll(/new JrError\(\s*'(JR_E_[A-Z_]+)'|errorCode: '(JR_E_[A-Z_]+)'/g)].map((m) => (m[1] ?? m[2])!)));
    expect([...declared].filter((c) => !thrown.has(c))).toEqual([]);
  });

  it('used anywhere in src/ are declared in errors.ts', () => {
    const used = others.flatMap(({ f, text }) => [...text.matchAll(/'(JR_E_[A-Z_]+)'/g)].map((m) => ({ code: m[1]!, f: path.relative(ROOT, f) })));
    expect(used.length).toBeGreaterThan(0);
    expect(used.filter((u) => !declared.has(u.code))).toEqual([]);
  });

  it('are each documented in docs/ERRORS.md, and the docs list no other', () => {
    const documented = new Set([...docs.matchAll(/^\| `(JR_E_[A-Z_]+)` \|/gm)].map((m) => m[1]!));
    expect([...declared].filter((c) => !documented.has(c))).toEqual([]);
    expect([...documented].filter((c) => !declared.has(c))).toEqual([]);
  });

  it('are matched by code, with the context kept', () => {
    const e = new JrError('JR_E_PUBLISH', 'ENOSPC', { jobId: 'j1', step: 'publish' });
    expect(isJrError(e, 'JR_E_PUBLISH')).toBe(true);
    expect(isJrError(e, 'JR_E_XZ')).toBe(false);
    expect(e.context).toMatchObject({ jobId: 'j1', step: 'publish' });
  });
});
