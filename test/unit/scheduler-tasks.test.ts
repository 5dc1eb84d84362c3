// Scheduler beyond clearPending (test/unit/scheduler.test.ts): the concurrency bound, a key
// ignored while queued or running, and a failing task that frees its key and slot without
// becoming an unhandled rejection.
import { describe, expect, it } from 'vitest';
import { Scheduler } from '../../src/scheduler.js';

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('Scheduler tasks', () => {
  it('runs at most `concurrency` tasks and ignores a key already queued or running', async () => {
    const s = new Scheduler(2);
    let open!: () => void;
    const wait = new Promise<void>((r) => { open = r; });
    const started: string[] = [];
    for (const k of ['a', 'b', 'c']) expect(s.add(k, async () => { started.push(k); await wait; })).toBe(true);
    expect(s.add('a', async () => { started.push('a again'); })).toBe(false);
    await tick();
    expect(started).toEqual(['a', 'b']);
    expect([s.size, s.running]).toEqual([3, 2]);
    open();
    await s.onIdle();
    expect(started).toEqual(['a', 'b', 'c']);
    expect(s.size).toBe(0);
    expect(s.add('a', async () => { started.push('a later'); })).toBe(true);
    await s.onIdle();
    expect(started.at(-1)).toBe('a later');
  });

  it('a failing task frees its key and its slot (vitest fails the run on an unhandled rejection)', async () => {
    const s = new Scheduler(1);
    s.add('bad', async () => { throw new Error('boom'); });
    let ran = false;
    s.add('good', async () => { ran = true; });
    await s.onIdle();
    expect(ran).toBe(true);
    expect(s.size).toBe(0);
  });
});
