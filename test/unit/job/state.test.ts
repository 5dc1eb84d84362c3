import { describe, expect, it } from 'vitest';
import { publishesToDone, transition, verbFor } from '../../../src/job/state.js';

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

  it('cancel (issue 14): from queued, claimed or running to cancelled, published to failed/, never twice', () => {
    for (const from of ['queued', 'claimed', 'running'] as const) expect(transition(from, 'cancel')).toBe('cancelled');
    expect(() => transition('cancelled', 'cancel')).toThrow(/cannot cancel/);
    expect(() => transition('succeeded', 'cancel')).toThrow(/cannot cancel/);
    expect(verbFor('cancelled')).toBe('cancel');
    expect(publishesToDone('cancelled')).toBe(false);
  });
});

describe('job state after the verdict', () => {
  it('a result that could not be published becomes an error, then stuck; recovery runs anything again', () => {
    expect(transition('failed', 'error')).toBe('error');
    expect(() => transition('error', 'error')).toThrow(/cannot error/);
    expect(transition('error', 'stick')).toBe('stuck');
    expect(() => transition('running', 'stick')).toThrow(/cannot stick/);
    for (const st of ['claimed', 'running', 'requeued', 'stuck', 'succeeded', 'error'] as const) {
      expect(transition(transition(st, 'recover'), 'claim')).toBe('claimed');
    }
    expect(() => transition('queued', 'recover')).toThrow(/cannot recover/);
  });
});
