// Job status as a string union; transitions are verbs checked against one table, so an
// impossible move (e.g. publishing a job twice) is a bug caught where it happens.
import { JrError } from '../errors.js';

export type JobState = 'queued' | 'claimed' | 'running' | 'succeeded' | 'failed' | 'timeout' | 'boot-failed' | 'rejected' | 'error' | 'requeued';

/** Final statuses, as written in NAME.json. */
export type FinalStatus = 'succeeded' | 'failed' | 'timeout' | 'boot-failed' | 'rejected' | 'error';

export type Verb = 'claim' | 'start' | 'succeed' | 'fail' | 'timeout' | 'bootFail' | 'reject' | 'error' | 'requeue';

const TABLE: Record<Verb, { from: JobState[]; to: JobState }> = {
  claim: { from: ['queued', 'requeued'], to: 'claimed' },
  start: { from: ['claimed'], to: 'running' },
  succeed: { from: ['running'], to: 'succeeded' },
  // From claimed too: a job interrupted max-attempts times fails (`interrupted`) without running again.
  fail: { from: ['claimed', 'running'], to: 'failed' },
  timeout: { from: ['running'], to: 'timeout' },
  bootFail: { from: ['running'], to: 'boot-failed' },
  reject: { from: ['queued', 'claimed', 'running'], to: 'rejected' },
  error: { from: ['queued', 'claimed', 'running'], to: 'error' },
  requeue: { from: ['claimed', 'running'], to: 'requeued' },
};

/** Apply `verb` to `state`; throws JR_E_INTERNAL when the move is not allowed. */
export function transition(state: JobState, verb: Verb): JobState {
  const t = TABLE[verb];
  if (!t.from.includes(state)) throw new JrError('JR_E_INTERNAL', `job state machine: cannot ${verb} a job that is ${state}`);
  return t.to;
}

/** The verb that ends a run with the given final status. */
export function verbFor(status: FinalStatus): Verb {
  const m: Record<FinalStatus, Verb> = { succeeded: 'succeed', failed: 'fail', timeout: 'timeout', 'boot-failed': 'bootFail', rejected: 'reject', error: 'error' };
  return m[status];
}

/** Where a final status is published: only success goes to done/. */
export function publishesToDone(status: FinalStatus): boolean {
  return status === 'succeeded';
}
