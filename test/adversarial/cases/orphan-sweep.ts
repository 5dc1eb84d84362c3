// The restart sweep, second line behind setpriv --pdeathsig: a qemu that outlived its service (here
// a fake qemu the test starts itself, holding the claim's disks as fds 3-5 the way the launcher
// hands them over) must be killed at the next start before its claim runs again.
import { spawn } from 'node:child_process';
import { copyFile, mkdir, open, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import type { Ctx } from '../lib/context.js';
import { fakeQemu } from '../lib/fixtures.js';
import { processesHolding } from '../lib/ledger.js';
import { leftovers, makeSpool, sleep, startService, statusOf, type Spool } from '../lib/spool.js';
import { fakeJob } from './fake-qemu.js';

interface Sweep { s: Spool; code: number | null; out: string; orphan: number; aliveAfter: boolean; exit: string | null }

const alive = (pid: number): boolean => { try { process.kill(pid, 0); return true; } catch { return false; } };

async function runSweep(ctx: Ctx): Promise<Sweep> {
  const work = path.join(ctx.work, 'run-sweep');
  const s = await makeSpool('sweep', ['--once']);
  const fake = await fakeQemu(s.root);
  s.args.push('--qemu', fake);
  // A claim as a crashed service leaves it: lease (run started), input, and the VM's work image.
  const id = 'orphan0-00000000';
  const dir = path.join(s.queue, '.running', id);
  await mkdir(dir, { recursive: true });
  const now = new Date().toISOString();
  await writeFile(path.join(dir, 'lease.json'), JSON.stringify({
    id, name: 'survivor', submitted: 'survivor.img', base: null, compressed: false, attempt: 1, servicePid: 999999,
    qemuPid: null, submittedAt: now, claimedAt: now, startedAt: now,
  }));
  await copyFile(await fakeJob(work, 'ok'), path.join(dir, 'input.img'));
  await copyFile(await fakeJob(work, 'stubborn'), path.join(dir, 'work.img'));
  ctx.ledger.expectResult(s, 'survivor.img');
  // The survivor: the fake qemu in a mode that ignores SIGTERM, with the work image as fds 3-5.
  const fh = await open(path.join(dir, 'work.img'), 'r+');
  const child = spawn(fake, ['-append', 'construir.nonce=abc'], { stdio: ['ignore', 'ignore', 'ignore', fh.fd, fh.fd, fh.fd], detached: true });
  const exited = new Promise<string | null>((r) => child.on('exit', (code, sig) => r(sig ?? String(code))));
  await fh.close();
  child.unref();
  await sleep(500);
  if (!alive(child.pid!)) throw new Error('the survivor did not start');

  const svc = startService(s);
  const code = await svc.exited;
  const aliveAfter = alive(child.pid!);
  if (aliveAfter) process.kill(child.pid!, 'SIGKILL'); // ours: never leave it behind, even when the case fails
  const exit = await Promise.race([exited, sleep(2000).then(() => null)]);
  ctx.ledger.recordQemuLeft('restart sweep: a qemu that outlived its service', aliveAfter ? [child.pid!] : await processesHolding(s.root));
  await ctx.ledger.auditSpool(s);
  return { s, code, out: svc.output(), orphan: child.pid!, aliveAfter, exit };
}

/** Register the sweep case. */
export function orphanSweepCases(ctx: () => Ctx): void {
  let r: Sweep | null = null;
  const run = (): Sweep => { if (!r) throw new Error('the sweep run did not complete'); return r; };
  beforeAll(async () => { r = await runSweep(ctx()); });

  it('kills the surviving qemu (found by the claim files it holds) before rerunning its claim', async () => {
    const { s, code, out, aliveAfter, exit, orphan } = run();
    expect(code, out.slice(-2000)).toBe(0);
    expect(aliveAfter).toBe(false);
    expect(exit).toBe('SIGKILL');
    expect(out).toContain(`"pid":${orphan}`);
    expect(out).toContain('killed a qemu left by a previous run');
    expect(await statusOf(s, 'survivor.img')).toMatchObject({ status: 'succeeded', attempt: 2 });
    expect(await leftovers(s)).toEqual([]);
  });
}
