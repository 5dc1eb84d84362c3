// Run D: the disk fills up while publishing (done/ and failed/ on tiny tmpfs mounts; the fake
// qemu "runs" jobs in no time). Partial results are removed, the submitted input is kept, the
// reason is recorded, and the service goes on. When even failed/ is full the job stays claimed,
// with the reason in its lease, and the next start publishes it.
import { execFile } from 'node:child_process';
import { copyFile, mkdir, readdir } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Ctx } from '../lib/context.js';
import { fakeQemu, job } from '../lib/fixtures.js';
import { leases, leftovers, makeSpool, sha256, startService, statusOf, type LeaseView, type Spool } from '../lib/spool.js';
import { fakeJob } from './fake-qemu.js';

const exec = promisify(execFile);

interface RunD {
  one: Spool; oneOutput: string; oneCode: number | null; oneDone: string[];
  two: Spool; twoOutput: string; twoCode: number | null; stuck: LeaseView[]; twoFilesWhileFull: string[];
  twoAgainOutput: string; twoAgainCode: number | null; sha: Map<string, string>; stuckInputSha: string | null;
}

const mounts: string[] = [];
async function tmpfs(dir: string, size: string): Promise<void> {
  await exec('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0755`, 'tmpfs', dir]);
  mounts.push(dir);
}
const files = async (dir: string): Promise<string[]> => (await readdir(dir)).filter((f) => f !== 'lost+found').sort();

async function runDiskFull(ctx: Ctx): Promise<RunD> {
  const work = path.join(ctx.work, 'run-d');
  const small = await fakeJob(work, 'ok');
  // 2 MB of random data: its .xz cannot fit a 256 KiB done/.
  await mkdir(path.join(work, 'big.tree'), { recursive: true });
  await exec('dd', ['if=/dev/urandom', `of=${path.join(work, 'big.tree', 'noise')}`, 'bs=1M', 'count=2', 'status=none']);
  const bigImg = await job(work, 'big', 'true', { mode: 'FAKEQEMU-MODE=ok\n' }, '1M');
  const sha = new Map([['big', await sha256(bigImg)]]);

  // 1: done/ is full, failed/ has room.
  const one = await makeSpool('d1', ['--once']);
  await tmpfs(one.done, '256k');
  one.args.push('--qemu', await fakeQemu(one.root));
  await copyFile(bigImg, path.join(one.queue, 'big.img'));
  await copyFile(small, path.join(one.queue, 'small.img'));
  for (const n of ['big.img', 'small.img']) ctx.ledger.expectResult(one, n);
  const s1 = startService(one);
  const oneCode = await s1.exited;
  await ctx.ledger.auditSpool(one);

  // 2: done/ and failed/ both full: nothing can be published.
  const two = await makeSpool('d2', ['--once']);
  await tmpfs(two.done, '64k');
  await tmpfs(two.failed, '64k');
  two.args.push('--qemu', await fakeQemu(two.root));
  await copyFile(bigImg, path.join(two.queue, 'big.img'));
  ctx.ledger.expectResult(two, 'big.img');
  const s2 = startService(two);
  const twoCode = await s2.exited;
  const stuck = await leases(two);
  const stuckInputSha = stuck[0] ? await sha256(path.join(stuck[0].dir, 'input.img')).catch(() => null) : null;
  const twoFilesWhileFull = [...await files(two.done), ...await files(two.failed)];
  // Space comes back; the next start publishes the kept job.
  for (const d of [two.done, two.failed]) await exec('mount', ['-o', 'remount,size=64m', d]);
  const s3 = startService(two);
  const twoAgainCode = await s3.exited;
  await ctx.ledger.auditSpool(two);
  return {
    one, oneOutput: s1.output(), oneCode, oneDone: await files(one.done),
    two, twoOutput: s2.output(), twoCode, stuck, twoFilesWhileFull, twoAgainOutput: s3.output(), twoAgainCode, sha, stuckInputSha,
  };
}

/** Register Run D and its cases. */
export function diskFullCases(ctx: () => Ctx): void {
  let d: RunD | null = null;
  const run = (): RunD => { if (!d) throw new Error('run D did not complete'); return d; };
  beforeAll(async () => { d = await runDiskFull(ctx()); });
  afterAll(async () => { for (const m of mounts.splice(0)) await exec('umount', ['-l', m]).catch(() => undefined); });

  it('done/ full: the partial result is removed, the job ends as error in failed/ with the input kept, the next job is published', async () => {
    const r = run();
    expect(r.oneCode, r.oneOutput.slice(-2000)).toBe(0);
    const big = await statusOf(r.one, 'big.img');
    expect(big).toMatchObject({ status: 'error', dir: 'failed' });
    expect(big.reason).toMatch(/^could not publish the succeeded result to \S+\/done: .*(ENOSPC|no space left)/i);
    expect(big.reason).toContain('the submitted input is kept here instead (the run: the job succeeded)');
    expect(await sha256(path.join(r.one.failed, 'big.img'))).toBe(r.sha.get('big'));
    expect(await statusOf(r.one, 'small.img')).toMatchObject({ status: 'succeeded', dir: 'done' });
    expect(r.oneDone).toEqual(['small.img.xz', 'small.json', 'small.log']); // no temp, no partial big.*
    expect(await leftovers(r.one)).toEqual([]);
  });

  it('done/ and failed/ full: the job stays claimed, input intact, the reason in its lease; the next start publishes it', async () => {
    const r = run();
    expect(r.twoCode, r.twoOutput.slice(-2000)).toBe(0);
    expect(r.twoOutput).toContain('job could not be published; it stays claimed');
    expect(r.stuck).toHaveLength(1);
    expect(r.stuck[0]!.lastError).toMatch(/could not publish the succeeded result .*; publishing that to \S+ failed too: .*(ENOSPC|no space left)/i);
    expect(r.twoFilesWhileFull).toEqual([]); // nothing partial in either directory
    expect(r.stuckInputSha).toBe(r.sha.get('big')); // the submitted input, intact in its claim
    expect(r.twoAgainCode, r.twoAgainOutput.slice(-2000)).toBe(0);
    const st = await statusOf(r.two, 'big.img');
    expect(st).toMatchObject({ status: 'succeeded', dir: 'done', attempt: 1 });
    expect(st.input.sha256).toBe(r.sha.get('big'));
    expect(await leftovers(r.two)).toEqual([]);
  });
}
