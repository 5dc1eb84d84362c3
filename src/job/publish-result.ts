// The last part of a job: turn what happened into files in done/ or failed/ (mail-style, through
// spool/publish). Either the VM's work image (compressed, verified) or the submitted input,
// untouched, as evidence; the console log; NAME.json last. On any failure every temp this attempt
// made is removed and the submitted input is still in its claim: the caller decides what next.
import { link, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { JrError, isJrError, messageOf } from '../errors.js';
import { copySparse, tempName } from '../fsutil.js';
import type { BaseImage } from '../image/base.js';
import type { Claim } from '../spool/claim.js';
import { claimPaths } from '../spool/claim.js';
import { publish } from '../spool/publish.js';
import { compressFile } from '../xz/compress.js';
import { verifyWritten } from '../xz/verify.js';
import { statusRecord, type FinalStatus, type JobStatus } from '../spool/record.js';
import type { RunOutcome } from './runner.js';
import type { DepsRecord } from '../spool/record.js';
import { packOutput } from '../deps/publish-output.js';

export interface Verdict { status: FinalStatus; exitCode: number | null; reason: string; publishWork: boolean }

export interface RunFacts {
  timings: { boot: number | null; run: number | null; compress: number | null };
  input: { bytes: number | null; sha256: string | null };
  base: BaseImage | null;
  vm: RunOutcome | null;
  /** deps (issue 11): packages resolved and the derived layer the job booted on. */
  deps?: DepsRecord | null;
  /** deps (issue 11): the manifest's "publish" ('output': NAME.output.tar.xz instead of the image). */
  publish?: 'image' | 'output';
}

export interface PublishContext {
  claim: Claim;
  target: string;
  /** xz preset for the result (--compress-preset). */
  preset: number;
  version: string;
  step: <T>(name: string, fn: () => Promise<T>) => Promise<T>;
}

/** Publish one result under the lease's name in `target`; returns the path of NAME.json. */
export async function publishResult(ctx: PublishContext, verdict: Verdict, facts: RunFacts): Promise<string> {
  const { claim, target, step } = ctx;
  const { lease, input } = claim;
  const temps: Record<string, string> = {};
  let output: JobStatus['output'] = null;
  let moved: string | null = null;
  let published = false;
  let stage = 'compress';
  try {
    if (verdict.publishWork && verdict.status === 'succeeded' && facts.publish === 'output') {
      // deps (issue 11): the manifest asked for /job/output only (a failed job keeps its image as evidence).
      const tmpTar = tempName(target, `${lease.name}.output.tar.xz`);
      temps['output.tar.xz'] = tmpTar;
      const o = await step('pack-output', () => packOutput(claimPaths(claim.dir).work, tmpTar));
      output = { bytes: o.bytes, sha256: o.sha256, preset: 1, form: 'output' };
    } else if (verdict.publishWork) {
      const tmpXz = tempName(target, `${lease.name}.img.xz`);
      temps['img.xz'] = tmpXz;
      const c = await step('compress', () => compressFile(claimPaths(claim.dir).work, tmpXz, { preset: ctx.preset }));
      // Our own output, checked before the claim (and the job's only other copy of its result) is
      // dropped: its data blocks decoded by xz -t, the rest compared with what we would write.
      stage = 'verify';
      await step('verify', () => verifyWritten(tmpXz, c));
      facts.timings.compress = c.durationMs;
      output = { bytes: c.bytesOut, sha256: c.sha256, preset: ctx.preset, form: 'image' };
    } else {
      // Not run (or not runnable): publish what was submitted, untouched, as evidence. A second
      // link (not a rename) so a failure later can never lose the input: it stays in the claim.
      stage = 'evidence';
      const ext = lease.compressed ? 'img.xz' : 'img';
      const tmpIn = tempName(target, `${lease.name}.${ext}`);
      temps[ext] = tmpIn;
      await link(input, tmpIn).catch(async (e: NodeJS.ErrnoException) => {
        if (e.code === 'EXDEV') return copySparse(input, tmpIn);
        // protected_hardlinks: without root we may not link a file someone else owns. Move it
        // instead, and move it back if publishing fails (see finally).
        if (e.code !== 'EPERM') throw e;
        await rename(input, tmpIn);
        moved = tmpIn;
      });
    }
    stage = 'log';
    const tmpLog = tempName(target, `${lease.name}.log`);
    temps.log = tmpLog;
    const consoleText = await readFile(claimPaths(claim.dir).log).catch(() => Buffer.alloc(0));
    await writeFile(tmpLog, Buffer.concat([consoleText, Buffer.from(`\n[jobrunner] ${verdict.status}: ${verdict.reason}\n`)]));

    stage = 'publish';
    const finishedAt = new Date().toISOString();
    const { timings, vm, base } = facts;
    const finalName = await step('publish', () => publish(target, lease.name, {
      temps,
      status: (publishedAs): JobStatus => statusRecord(lease, publishedAs, {
        status: verdict.status, exitCode: verdict.exitCode, reason: verdict.reason, version: ctx.version,
        startedAt: lease.startedAt, input: facts.input, timings, output,
        baseImage: base ? { name: base.name, sha256: base.rootSha256 } : null,
        accel: vm?.accel ?? null,
        start: vm?.start ?? null,
        console: vm ? { bytes: vm.consoleBytes, truncated: vm.consoleTruncated, lastLine: vm.lastLine } : null,
        runner: vm?.runner,
        deps: facts.deps ?? null,
      }, finishedAt),
    }));
    published = true;
    return path.join(target, `${finalName}.json`);
  } catch (e) {
    // Whatever failed (ENOSPC, a verify mismatch), the caller sees one code; the text is kept.
    if (isJrError(e, 'JR_E_PUBLISH')) throw e;
    throw new JrError('JR_E_PUBLISH', messageOf(e), { jobId: lease.id, step: isJrError(e) ? e.context.step ?? stage : stage, cause: e });
  } finally {
    if (moved && !published) await rename(moved, input);
    // publish() consumed the temps on success; after a failure this frees the space they held.
    for (const t of Object.values(temps)) await rm(t, { force: true }).catch(() => undefined);
  }
}
