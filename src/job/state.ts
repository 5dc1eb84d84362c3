// Job status as a string union; transitions are verbs checked against one table, so an
// impossible move (e.g. publishing a job twice) is a bug caught where it happens. The state is
// kept in the job's lease (spool/claim.ts), so `jobrunner status` reads it instead of guessing.
import { JrError } from '../errors.js';
import type { FinalStatus, JobState } from '../spool/record.js';

export type Verb = 'claim' | 'start' | 'succeed' | 'fail' | 'timeout' | 'bootFail' | 'reject' | 'error' | 'requeue' | 'stick' | 'recover' | 'cancel';

const FINAL: JobState[] = ['succeeded', 'failed', 'timeout', 'boot-failed', 'rejected', 'error', 'cancelled'];

const TABLE: Record<Verb, { from: JobState[]; to: JobState }> = {
  claim: { from: ['queued', 'requeued'], to: 'claimed' },
  start: { from: ['claimed'], to: 'running' },
  succeed: { from: ['running'], to: 'succeeded' },
  // From claimed too: a job interrupted max-attempts times fails (`interrupted`) without running again.
  fail: { from: ['claimed', 'running'], to: 'failed' },
  timeout: { from: ['running'], to: 'timeout' },
  bootFail: { from: ['running'], to: 'boot-failed' },
  reject: { from: ['queued', 'claimed', 'running'], to: 'rejected' },
  // From a final status too: a result that could not be published is published as an `error`.
  error: { from: ['queued', 'claimed', 'running', ...FINAL.filter((f) => f !== 'error')], to: 'error' },
  // Shutdown: the run is stopped on purpose and the claim kept for the next start.
  requeue: { from: ['claimed', 'running'], to: 'requeued' },
  // Nothing could be published, not even the `error`: the claim stays for the next start.
  stick: { from: FINAL, to: 'stuck' },
  // Start-up: every claim a previous service left, wherever it stopped, is run again.
  recover: { from: ['claimed', 'running', 'requeued', 'stuck', ...FINAL], to: 'requeued' },
  // A DELETE through the API (issue 14): a queued, claimed or running job ends in failed/ as cancelled.
  cancel: { from: ['queued', 'claimed', 'running'], to: 'cancelled' },
};

/** Apply `verb` to `state`; throws JR_E_INTERNAL when the move is not allowed. */
export function transition(state: JobState, verb: Verb): JobState {
  const t = TABLE[verb];
  if (!t.from.includes(state)) throw new JrError('JR_E_INTERNAL', `job state machine: cannot ${verb} a job that is ${state}`);
  return t.to;
}

/** The verb that ends a run with the given final status. */
export function verbFor(status: FinalStatus): Verb {
  const m: Record<FinalStatus, Verb> = { succeeded: 'succeed', failed: 'fail', timeout: 'timeout', 'boot-failed': 'bootFail', rejected: 'reject', error: 'error', cancelled: 'cancel' };
  return m[status];
}

/** Where a final status is published: only success goes to done/. */
export function publishesToDone(status: FinalStatus): boolean {
  return status === 'succeeded';
}
