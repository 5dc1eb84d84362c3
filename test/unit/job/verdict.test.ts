// verdictOf: how each way a VM run ends becomes a published status.
import { describe, expect, it } from 'vitest';
import { verdictOf } from '../../../src/job/lifecycle.js';
import type { VmRunOutcome } from '../../../src/job/vm-run.js';

const out = (o: Partial<VmRunOutcome>): VmRunOutcome => ({
  end: 'exited', exitCode: 0, clean: true, reason: 'r', bootMs: 1, totalMs: 2, consoleBytes: 0, consoleTruncated: false, lastLine: '',
  sawOutput: true, qemuExitCode: 0, qemuSignal: null, stderrTail: '', argv: [], accel: 'tcg', accelReason: '', ...o,
});

describe('verdictOf', () => {
  it('maps every VmEnd to a status; only a bad image publishes the input instead of the work image', () => {
    const table = (['exited', 'timeout', 'boot-failed', 'bad-image', 'crashed', 'aborted', 'killed'] as const).map((end) => {
      const v = verdictOf(out({ end, exitCode: end === 'exited' ? 0 : null, reason: `why ${end}` }));
      return [end, v.status, v.exitCode, v.publishWork, v.reason];
    });
    expect(table).toEqual([
      ['exited', 'succeeded', 0, true, 'why exited'],
      ['timeout', 'timeout', null, true, 'why timeout'],
      ['boot-failed', 'boot-failed', null, true, 'why boot-failed'],
      ['bad-image', 'rejected', null, false, 'why bad-image'],
      ['crashed', 'failed', null, true, 'why crashed'],
      ['aborted', 'failed', null, true, 'why aborted'],
      ['killed', 'error', null, true, 'why killed'],
    ]);
  });

  it('a non-zero exit is failed with its code', () => {
    expect(verdictOf(out({ exitCode: 2 }))).toMatchObject({ status: 'failed', exitCode: 2, publishWork: true });
  });
});
