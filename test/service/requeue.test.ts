// The no-qemu tier: a Runner that reports an infrastructure fault (RunOutcome.requeue, what the
// Slurm runner returns on NODE_FAIL or a job that ended without running our command) makes the
// lifecycle run the job again from its input as a new attempt, up to --max-attempts; the real
// qemu runner (over the fake qemu) does the runs that are let through.
import { copyFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { vmRunner, type RunOutcome, type RunRequest, type Runner } from '../../src/job/runner.js';
import { AccelState } from '../../src/job/vm-run.js';
import { fixtureJob } from '../lib/fixture-base.js';
import { ls, qemuStarts, runOnce, statusOf, tierSpool } from '../lib/tier.js';

/** The real qemu runner, but its first `faults` runs come back as infrastructure faults. */
function flaky(faults: number): Runner & { calls: number } {
  const real = vmRunner(new AccelState('tcg'));
  const r = {
    kind: 'flaky', calls: 0,
    async run(req: RunRequest): Promise<RunOutcome> {
      r.calls++;
      const out = await real.run(req);
      return r.calls <= faults ? { ...out, end: 'crashed', requeue: `injected node failure ${r.calls}` } : out;
    },
  };
  return r;
}

describe('a run that fails outside the job is run again', () => {
  it('one infrastructure fault: attempt 2 runs from the input and succeeds, published once', async () => {
    const t = await tierSpool('requeue-once');
    await copyFile(await fixtureJob(t.root, 'ok', 'ok'), path.join(t.queue, 'ok.img'));
    const runner = flaky(1);
    const svc = await runOnce(t, [], { runner });
    expect(runner.calls).toBe(2);
    expect(await qemuStarts(t)).toEqual(['ok', 'ok']);
    expect(await statusOf(t, 'ok.img')).toMatchObject({ dir: 'done', status: 'succeeded', attempt: 2, exitCode: 0 });
    expect(svc.logged('job requeued').map((l) => l.reason)).toEqual(['injected node failure 1; running it again (attempt 2)']);
    expect(await ls(t.done)).toEqual(['ok.img.xz', 'ok.json', 'ok.log']);
    expect(await ls(t.failed)).toEqual([]);
    expect(await ls(path.join(t.queue, '.running'))).toEqual([]);
  });

  it('faults on every attempt: an error (JR_E_INFRA) after --max-attempts runs, never a success', async () => {
    const t = await tierSpool('requeue-max');
    await copyFile(await fixtureJob(t.root, 'ok', 'ok'), path.join(t.queue, 'ok.img'));
    const runner = flaky(99);
    await runOnce(t, ['--max-attempts', '3'], { runner });
    expect(runner.calls).toBe(3);
    const st = await statusOf(t, 'ok.img');
    expect(st).toMatchObject({ dir: 'failed', status: 'error' });
    expect(st.reason).toMatch(/outside the job 3 times \(max-attempts 3\); last: injected node failure 3/);
    expect(await ls(t.done)).toEqual([]);
  });
});
