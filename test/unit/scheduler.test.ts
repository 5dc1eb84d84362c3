import { describe, expect, it } from 'vitest';
import { Scheduler } from '../../src/scheduler.js';

describe('Scheduler', () => {
  it('runs each key once at a time, and clearPending frees the keys of dropped tasks', async () => {
    const s = new Scheduler(1);
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    const ran: string[] = [];
    expect(s.add('a', async () => { ran.push('a'); await gate; })).toBe(true);
    expect(s.add('a', async () => { ran.push('a again'); })).toBe(false);
    expect(s.add('b', async () => { ran.push('b'); })).toBe(true);
    expect(s.add('c', async () => { ran.push('c'); })).toBe(true);
    await new Promise((r) => setTimeout(r, 10));
    expect(s.size).toBe(3);
    expect(s.running).toBe(1);
    s.clearPending();
    expect(s.size).toBe(1); // only 'a', which is running
    // A dropped key can be scheduled again.
    expect(s.add('b', async () => { ran.push('b later'); })).toBe(true);
    release();
    await s.onIdle();
    expect(ran).toEqual(['a', 'b later']);
    expect(s.size).toBe(0);
  });
});
