// src/lock.ts: one holder at a time, a dead owner's lock is broken, a planted symlink is never
// written through or read.
import { mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { breakStale, lockHolder, tryLock, unlock, withLock } from '../../src/lock.js';

const dirP = mkdtemp(path.join(os.tmpdir(), 'lock-test-'));
afterAll(async () => rm(await dirP, { recursive: true, force: true }));

describe('lock files', () => {
  it('has one holder; records pid and start time; a dead owner is broken', async () => {
    const f = path.join(await dirP, 'a.lock');
    expect(await tryLock(f)).toBe(true);
    expect(await tryLock(f)).toBe(false);
    const h = await lockHolder(f);
    expect(h?.pid).toBe(process.pid);
    expect(h?.start).toBeGreaterThan(0);
    await breakStale(f); // alive: kept
    expect(await tryLock(f)).toBe(false);
    // Same pid, another start time: a recycled pid, so the owner is gone.
    await writeFile(f, `${process.pid} 1\n`);
    expect(await lockHolder(f)).toBeNull();
    await breakStale(f);
    expect(await tryLock(f)).toBe(true);
    await unlock(f);
  });

  it('never follows a planted symlink', async () => {
    const dir = await dirP;
    const victim = path.join(dir, 'victim');
    await writeFile(victim, `${process.pid}\n`);
    const f = path.join(dir, 'b.lock');
    await symlink(victim, f);
    expect(await lockHolder(f)).toBeNull();
    expect(await tryLock(f)).toBe(false);
    await breakStale(f);
    expect(await tryLock(f)).toBe(true);
    expect(await readFile(victim, 'utf8')).toBe(`${process.pid}\n`);
    await unlock(f);
  });

  it('withLock serialises holders and releases after', async () => {
    const f = path.join(await dirP, 'c.lock');
    const order: string[] = [];
    const t = (n: string) => withLock(f, async () => { order.push(`${n}+`); await new Promise((r) => setTimeout(r, 20)); order.push(`${n}-`); }, 5_000, () => new Error('timeout'));
    await Promise.all([t('a'), t('b')]);
    expect(order.join(' ')).toMatch(/^(a\+ a- b\+ b-|b\+ b- a\+ a-)$/);
    expect(await lockHolder(f)).toBeNull();
  });
});
