import { describe, expect, it } from 'vitest';
import { transition } from '../../../src/job/state.js';

describe('job state machine', () => {
  it('allows the normal path and forbids impossible moves', () => {
    let s = transition('queued', 'claim');
    s = transition(s, 'start');
    expect(transition(s, 'succeed')).toBe('succeeded');
    expect(() => transition('succeeded', 'fail')).toThrow(/cannot fail a job that is succeeded/);
    expect(() => transition('queued', 'start')).toThrow(/cannot start/);
    expect(transition('claimed', 'reject')).toBe('rejected');
    expect(transition('running', 'requeue')).toBe('requeued');
    // max-attempts: an interrupted job fails straight from its claim, without running again.
    expect(transition('claimed', 'fail')).toBe('failed');
  });
});
