// Semaphore: at most N at a time, in the order they asked; a failure frees its place.
import { describe, expect, it } from 'vitest';
import { Semaphore } from '../../src/semaphore.js';

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('Semaphore', () => {
  it('runs at most N at once, in arrival order', async () => {
    const sem = new Semaphore(2);
    let active = 0; let peak = 0;
    const order: number[] = [];
    const gates: Array<() => void> = [];
    const runs = [0, 1, 2, 3, 4].map((i) => sem.run(async () => {
      active++; peak = Math.max(peak, active); order.push(i);
      await new Promise<void>((r) => gates.push(r));
      active--;
      return i;
    }));
    await tick();
    expect(order).toEqual([0, 1]);
    while (gates.length) { gates.shift()!(); await tick(); await tick(); }
    expect(await Promise.all(runs)).toEqual([0, 1, 2, 3, 4]);
    expect(order).toEqual([0, 1, 2, 3, 4]);
    expect(peak).toBe(2);
  });

  it('a task that throws rejects its caller and frees its place', async () => {
    const sem = new Semaphore(1);
    const failed = sem.run(async () => { throw new Error('boom'); });
    const next = sem.run(async () => 'next');
    await expect(failed).rejects.toThrow('boom');
    expect(await next).toBe('next');
    expect(await sem.run(async () => 'again')).toBe('again'); // the place came back
  });
});
