// The status record of a foreground `jobrunner run` (issue 11): the same JobStatus the service
// publishes as NAME.json (spool/record.ts), so a run by hand is as inspectable as a queued one.
// There is no queue, claim or published result: submitted/publishedAs name the image, which the
// run modified in place (output stays null), and the id is a fresh one.
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { BaseImage } from '../image/base.js';
import { statusRecord, type DepsRecord, type JobStatus } from '../spool/record.js';
import { VERSION } from '../version.js';
import { verdictOf } from './lifecycle.js';
import type { VmRunOutcome } from './vm-run.js';

export interface RunRecordFacts {
  image: string;
  startedAt: string;
  input: { bytes: number | null; sha256: string | null };
  base: BaseImage;
  vm: VmRunOutcome;
  deps: DepsRecord | null;
}

/** The JobStatus of one foreground run that ended with `f.vm`. */
export function runRecord(f: RunRecordFacts, finishedAt = new Date().toISOString()): JobStatus {
  const v = verdictOf(f.vm);
  const file = path.basename(f.image);
  const subject = { name: file.replace(/\.img$/, ''), id: `run-${randomBytes(6).toString('hex')}`, submitted: file, attempt: 1, submittedAt: f.startedAt };
  return statusRecord(subject, file, {
    status: v.status, exitCode: v.exitCode, reason: v.reason, version: VERSION, startedAt: f.startedAt, input: f.input,
    timings: { boot: f.vm.bootMs, run: f.vm.bootMs === null ? null : f.vm.totalMs - f.vm.bootMs, compress: null },
    baseImage: { name: f.base.name, sha256: f.base.rootSha256 }, accel: f.vm.accel,
    console: { bytes: f.vm.consoleBytes, truncated: f.vm.consoleTruncated, lastLine: f.vm.lastLine },
    runner: { backend: 'local', node: null, slurmJobId: null }, deps: f.deps,
  }, finishedAt);
}
