// The Slurm adapter's pure parts: sbatch argv, squeue --json parsing, and how Slurm's ends map
// onto ours (an end without our outcome file is never a success).
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { OUTCOME_FILE, readOutcome } from '../../src/slurm/protocol.js';
import { parseSqueueJson, sbatchArgs, shellQuote } from '../../src/slurm/commands.js';
import { mapSlurmEnd, slurmJobName, splitArgs } from '../../src/slurm/runner.js';

describe('sbatch argv', () => {
  it('carries our limits, refuses Slurm requeues and appends operator options last', () => {
    expect(sbatchArgs({ script: '#!/bin/sh\n', jobName: slurmJobName('abc-1'), timeMinutes: 3.2, memMiB: 1408, cpus: 2,
      output: '/q/.running/abc-1/slurm.out', chdir: '/tmp', partition: 'build', account: '', extra: ['--qos=low'] })).toEqual([
      '--parsable', '--job-name=jobrunner-abc-1', '--time=4', '--mem=1408M', '--cpus-per-task=2', '--ntasks=1', '--nodes=1',
      '--no-requeue', '--output=/q/.running/abc-1/slurm.out', '--chdir=/tmp', '--export=NONE', '--partition=build', '--qos=low']);
  });
  it('splits --slurm-args on whitespace without any shell', () => {
    expect(splitArgs('  --qos=a   --comment=$(id);rm\t--hold ')).toEqual(['--qos=a', '--comment=$(id);rm', '--hold']);
  });
  it('quotes words for the batch script', () => {
    expect(shellQuote("/srv/it's here")).toBe(`'/srv/it'\\''s here'`);
  });
});

describe('squeue --json', () => {
  it('reads state, raw exit status and node (Slurm 22.05 shape)', () => {
    const text = JSON.stringify({ jobs: [
      { job_id: 7, job_state: 'FAILED', exit_code: 768, nodes: 'n1', state_reason: 'NonZeroExitCode' },
      { job_id: 8, job_state: 'PENDING', nodes: '', state_reason: 'Resources' },
    ] });
    expect(parseSqueueJson(text)).toEqual([
      { jobId: 7, state: 'FAILED', exitCode: 768, node: 'n1', reason: 'NonZeroExitCode' },
      { jobId: 8, state: 'PENDING', exitCode: null, node: null, reason: 'Resources' },
    ]);
  });
  it('refuses output that is not squeue JSON', () => {
    expect(() => parseSqueueJson('slurm_load_jobs error')).toThrow(/not JSON/);
    expect(() => parseSqueueJson('{}')).toThrow(/no "jobs"/);
  });
});

describe('Slurm ends without our outcome file', () => {
  const info = (state: string) => ({ jobId: 9, state, exitCode: 0, node: 'n2', reason: 'None' });
  it('COMPLETED without an outcome is an infrastructure fault, never a success', () => {
    expect(mapSlurmEnd(info('COMPLETED'), false)).toEqual({ kind: 'infra', reason: 'Slurm job 9 on n2 ended COMPLETED without running our node command to its end' });
  });
  it.each(['NODE_FAIL', 'BOOT_FAIL', 'FAILED'])('%s is requeued', (s) => {
    expect(mapSlurmEnd(info(s), false).kind).toBe('infra');
  });
  it('TIMEOUT is a timeout, OUT_OF_MEMORY an error, a foreign CANCELLED an error naming Slurm', () => {
    expect(mapSlurmEnd(info('TIMEOUT'), false)).toMatchObject({ kind: 'outcome', end: 'timeout' });
    expect(mapSlurmEnd(info('OUT_OF_MEMORY'), false)).toMatchObject({ kind: 'outcome', end: 'killed', reason: expect.stringContaining('out of memory') });
    expect(mapSlurmEnd(info('CANCELLED'), false)).toMatchObject({ kind: 'outcome', end: 'killed', reason: expect.stringContaining('cancelled in Slurm by someone else') });
    expect(mapSlurmEnd(info('CANCELLED'), true)).toMatchObject({ kind: 'outcome', end: 'aborted' });
  });
});

describe('the node outcome file', () => {
  it('is taken only when whole, of our protocol and for this job: anything else is "no outcome" (never a success)', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'jr-outcome-'));
    const good = { protocol: 1, jobId: 'j1', slurmJobId: 5, node: 'n1', host: 'h', startedAt: '', finishedAt: '', outcome: { end: 'exited', exitCode: 0 } };
    const cases: Array<[string, string]> = [
      ['truncated', JSON.stringify(good).slice(0, 40)],
      ['another job', JSON.stringify({ ...good, jobId: 'j2' })],
      ['another protocol', JSON.stringify({ ...good, protocol: 2 })],
      ['no outcome', JSON.stringify({ ...good, outcome: null })],
      ['not an object', '"exited"'],
      ['empty', ''],
    ];
    for (const [what, text] of cases) {
      await writeFile(path.join(dir, OUTCOME_FILE), text);
      expect(await readOutcome(dir, 'j1'), what).toBeNull();
    }
    await writeFile(path.join(dir, OUTCOME_FILE), JSON.stringify(good));
    expect((await readOutcome(dir, 'j1'))?.outcome.end).toBe('exited');
    // Tied to the Slurm job: a node-run left from an earlier attempt (Slurm job 4) does not speak for job 5.
    expect((await readOutcome(dir, 'j1', 5))?.slurmJobId).toBe(5);
    expect(await readOutcome(dir, 'j1', 4)).toBeNull();
    await writeFile(path.join(dir, OUTCOME_FILE), JSON.stringify({ ...good, slurmJobId: null }));
    expect(await readOutcome(dir, 'j1', 5)).toBeNull();
  });
});
