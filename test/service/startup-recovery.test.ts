// Start-up of the real Service over a spool a previous run left behind, with a fake qemu: the
// sweeps (temp files, qemu scratch dirs), the .running guard, and recovery of stale claims
// (incomplete ones dropped, interrupted ones rerun with their attempt counted, max-attempts
// failed as interrupted without a VM, non-files refused, a surviving qemu killed first).
import { spawn } from 'node:child_process';
import { chmod, copyFile, mkdir, mkdtemp, open, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { isJrError } from '../../src/errors.js';
import { vmTmpPrefix } from '../../src/spool/spool.js';
import { fakeQemu } from '../lib/fake-qemu.js';
import { fixtureJob } from '../lib/fixture-base.js';
import { ls, makeInProcess, qemuStarts, runOnce, sleep, statusOf, tierSpool, waitFor, type TierSpool } from '../lib/tier.js';

/** Plant queue/.running/<id>/ as a crashed service would leave it (input: a copy of `img`, or none). */
async function plantClaim(t: TierSpool, id: string, img: string | null, lease: Record<string, unknown> = {}): Promise<string> {
  const dir = path.join(t.queue, '.running', id);
  await mkdir(dir, { recursive: true });
  await chmod(path.join(t.queue, '.running'), 0o755);
  if (img) await copyFile(img, path.join(dir, 'input.img'));
  const at = new Date(Date.now() - 60_000).toISOString();
  await writeFile(path.join(dir, 'lease.json'), JSON.stringify({
    id, name: id, submitted: `${id}.img`, base: null, compressed: false, attempt: 1,
    servicePid: 999_999_999, qemuPid: null, submittedAt: at, claimedAt: at, startedAt: at, ...lease,
  }));
  return dir;
}

describe('service start-up with a fake qemu', { timeout: 90_000 }, () => {
  it('removes temp files in done/ and failed/ and its own qemu scratch directories, and only those', async () => {
    const t = await tierSpool('sweep');
    await writeFile(path.join(t.done, '.x.img.xz.123.abc.tmp'), 'partial');
    await writeFile(path.join(t.failed, '.y.json.1.2.tmp'), 'partial');
    await writeFile(path.join(t.done, 'keep.txt'), 'not ours to remove');
    const ours = await mkdtemp(path.join(os.tmpdir(), `${vmTmpPrefix(t.queue, 'gone-1')}-`));
    const other = await mkdtemp(path.join(os.tmpdir(), `${vmTmpPrefix(path.join(t.root, 'other-queue'), 'x')}-`));
    try {
      const svc = await runOnce(t);
      expect(await ls(t.done)).toEqual(['keep.txt']);
      expect(await ls(t.failed)).toEqual([]);
      const tmp = await readdir(os.tmpdir());
      expect(tmp).not.toContain(path.basename(ours));
      expect(tmp).toContain(path.basename(other));
      expect(svc.logged('removed temp files left by a previous run').map((l) => l.files)).toEqual([1, 1]);
      expect(svc.logged('removed qemu scratch directories')[0]).toMatchObject({ dirs: 1 });
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });

  it('refuses to start when queue/.running is writable by others, and says how to fix it', async () => {
    const t = await tierSpool('running-mode');
    await mkdir(path.join(t.queue, '.running'));
    await chmod(path.join(t.queue, '.running'), 0o777);
    const svc = makeInProcess(t, ['--once']);
    const err = await svc.service.start().then(() => null, (e: unknown) => e);
    expect(isJrError(err, 'JR_E_CONFIG'), String(err)).toBe(true);
    expect(String(err)).toMatch(/\.running must be a directory owned by this service and writable only by it \(found mode 777/);
    await svc.service.stop('test');
  });

  it('refuses to start on a missing or incomplete base image, naming the fix', async () => {
    const t = await tierSpool('no-base');
    await rm(path.join(t.baseDir, 'default', 'initrd.img'));
    const svc = makeInProcess(t, ['--once']);
    const err = await svc.service.start().then(() => null, (e: unknown) => e);
    expect(isJrError(err, 'JR_E_BASE_IMAGE'), String(err)).toBe(true);
    expect(String(err)).toMatch(/base image 'default' is incomplete: initrd\.img is missing; build it with: scripts\/build-base-image --name default --force/);
    await svc.service.stop('test');
  });

  it('replaces a stale lock (dead pid) and never writes through a lock planted as a symlink', async () => {
    const t = await tierSpool('lock');
    const victim = path.join(t.root, 'victim.txt');
    await writeFile(victim, 'precious\n');
    await symlink(victim, path.join(t.queue, '.jobrunner.lock'));
    await runOnce(t);
    expect(await readFile(victim, 'utf8')).toBe('precious\n');
    await writeFile(path.join(t.queue, '.jobrunner.lock'), '999999999\n');
    const svc = await runOnce(t);
    expect(svc.logged('stopped')).toHaveLength(1);
    expect(await ls(t.queue)).toEqual(['.running']); // the lock is removed on stop
  });
});

describe('recovery of stale claims with a fake qemu', { timeout: 90_000 }, () => {
  it('drops incomplete claims, reruns interrupted ones (attempt counted unless requeued on purpose), fails max-attempts as interrupted', async () => {
    const t = await tierSpool('recover');
    const ok = await fixtureJob(t.root, 'ok', 'ok');
    await plantClaim(t, 'no-input', null);
    await mkdir(path.join(t.queue, '.running', 'no-lease'));
    await plantClaim(t, 'crashed', ok, { attempt: 1 });
    await plantClaim(t, 'never-started', ok, { attempt: 1, startedAt: null });
    await plantClaim(t, 'shut-down', ok, { attempt: 2, requeued: true });
    await plantClaim(t, 'too-often', ok, { attempt: 3 });
    const svc = await runOnce(t, ['--max-attempts', '3']);
    expect(await statusOf(t, 'crashed.img')).toMatchObject({ dir: 'done', status: 'succeeded', attempt: 2 });
    expect(await statusOf(t, 'never-started.img')).toMatchObject({ dir: 'done', status: 'succeeded', attempt: 1 });
    expect(await statusOf(t, 'shut-down.img')).toMatchObject({ dir: 'done', status: 'succeeded', attempt: 2 });
    const failed = await statusOf(t, 'too-often.img');
    expect(failed).toMatchObject({ dir: 'failed', status: 'failed', attempt: 4, output: null, durations: { boot: null } });
    expect(failed.reason).toMatch(/^interrupted: the service stopped while running this job 3 times \(max-attempts 3\)/);
    // The interrupted job's input is kept as evidence, byte for byte; it never reached a qemu.
    expect((await readFile(path.join(t.failed, 'too-often.img'))).equals(await readFile(ok))).toBe(true);
    expect(await qemuStarts(t)).toEqual(['ok', 'ok', 'ok']);
    expect(svc.logged('removed an incomplete claim')).toHaveLength(2);
    expect(svc.logged('requeued a job interrupted by a previous run').map((l) => l.attempt).sort()).toEqual([1, 2, 2, 4]);
    expect(await ls(path.join(t.queue, '.running'))).toEqual([]);
  });

  it('finishes a bulk rejection a crash interrupted: held entries are rejected (or run) under their journal\'s id and name', async () => {
    const t = await tierSpool('held');
    const held = path.join(t.queue, '.running', '.held');
    await mkdir(held, { recursive: true });
    await chmod(path.join(t.queue, '.running'), 0o755);
    const at = '2026-01-02T03:04:05.000Z';
    // Two entries of one chunk: an empty one (junk), and one whose name was swapped for a real job
    // between the look and the take (the chunk would have handed it back as a claim).
    await writeFile(path.join(held, 'mxaaaaaa-00000001.journal'), [
      { id: 'mxaaaaaa-00000002', file: 'junk.img', submitted: null, mtime: at },
      { id: 'mxaaaaaa-00000003', file: 'real.img', submitted: null, mtime: at },
    ].map((l) => JSON.stringify(l)).join('\n') + '\n');
    await writeFile(path.join(held, 'mxaaaaaa-00000002.img'), '');
    await copyFile(await fixtureJob(t.root, 'real', 'ok'), path.join(held, 'mxaaaaaa-00000003.img'));
    const svc = await runOnce(t);
    expect(await statusOf(t, 'junk.img')).toMatchObject({ dir: 'failed', status: 'rejected', id: 'mxaaaaaa-00000002', submittedAt: at, reason: 'not a usable job image: it is empty (0 bytes)' });
    expect(await statusOf(t, 'real.img')).toMatchObject({ dir: 'done', status: 'succeeded', id: 'mxaaaaaa-00000003', attempt: 1 });
    expect(await ls(path.join(t.queue, '.running'))).toEqual([]);
    expect(svc.logged('recovered entries an interrupted bulk rejection held')[0]).toMatchObject({ claims: 2, published: 0 });
  });

  it('refuses a claimed entry that is not a plain file without following it', async () => {
    const t = await tierSpool('recover-link');
    const secret = path.join(t.root, 'secret.img');
    await copyFile(await fixtureJob(t.root, 'ok', 'ok'), secret);
    const dir = await plantClaim(t, 'linked', null);
    await symlink(secret, path.join(dir, 'input.img'));
    await runOnce(t);
    const st = await statusOf(t, 'linked.img');
    expect(st).toMatchObject({ dir: 'failed', status: 'rejected' });
    expect(st.reason).toMatch(/it is a symbolic link, not a regular file; the link was removed from the queue, never followed/);
    expect(await ls(t.failed)).toEqual(['linked.json']); // no evidence for a link
    expect(await qemuStarts(t)).toEqual([]);
  });

  it('kills a qemu that outlived its service (it holds the claim\'s disks) before the claim runs again', async () => {
    const t = await tierSpool('orphan');
    const job = await fixtureJob(t.root, 'ok', 'ok');
    const dir = await plantClaim(t, 'orphaned', job);
    // The survivor: the fake qemu in a mode that stays itself (it does not exec), holding the
    // claim's work image as fds 3-5 the way the launcher hands disks over.
    await copyFile(await fixtureJob(t.root, 'stubborn', 'stubborn'), path.join(dir, 'work.img'));
    const fh = await open(path.join(dir, 'work.img'), 'r+');
    const orphan = spawn(t.qemu, ['-append', 'construir.nonce=abc'], { stdio: ['ignore', 'ignore', 'ignore', fh.fd, fh.fd, fh.fd], detached: true });
    await fh.close();
    const gone = new Promise<string | null>((r) => orphan.on('exit', (_c, sig) => r(sig)));
    try {
      await waitFor('the orphan to start', async () => (await qemuStarts(t)).length === 1);
      const svc = await runOnce(t);
      expect(await Promise.race([gone, sleep(5000).then(() => 'still running')])).toBe('SIGKILL');
      expect(svc.logged('killed a qemu left by a previous run')[0]).toMatchObject({ pid: orphan.pid });
    } finally {
      try { process.kill(orphan.pid!, 'SIGKILL'); } catch { /* killed by the service, as it should be */ }
    }
    expect(await statusOf(t, 'orphaned.img')).toMatchObject({ status: 'succeeded', attempt: 2 });
  });
});

describe('stop and crash with a fake qemu', { timeout: 90_000 }, () => {
  it('a shutdown past --shutdown-grace kills the running job and requeues it; the next start reruns it without counting an attempt', async () => {
    const t = await tierSpool('shutdown');
    await copyFile(await fixtureJob(t.root, 'long', 'slow', { sleep: 60 }), path.join(t.queue, 'long.img'));
    const svc = makeInProcess(t, ['--shutdown-grace', '500ms']);
    await svc.service.start();
    await waitFor('the job to start', async () => svc.logged('job started').length === 1);
    await waitFor('the fake qemu to start', async () => (await qemuStarts(t)).length === 1);
    await svc.service.stop('test shutdown');
    await svc.service.done;
    expect(svc.logged('job requeued')).toHaveLength(1);
    const [id] = await ls(path.join(t.queue, '.running'));
    const lease = JSON.parse(await readFile(path.join(t.queue, '.running', id!, 'lease.json'), 'utf8')) as { requeued: boolean; attempt: number; qemuPid: number | null };
    expect(lease).toMatchObject({ requeued: true, attempt: 1, qemuPid: null });
    // The rerun: the same claim, now with a qemu that finishes at once.
    const quick = await fakeQemu(await mkdtemp(path.join(t.root, 'q2-')), 'ok');
    await writeFile(path.join(t.queue, '.running', id!, 'input.img'), await readFile(await fixtureJob(t.root, 'plain', '')));
    await runOnce(t, ['--qemu', quick]);
    expect(await statusOf(t, 'long.img')).toMatchObject({ status: 'succeeded', attempt: 1 });
  });

  it('requeues a job whose service was SIGKILLed (its qemu dies with it) and counts the attempt', async () => {
    const t = await tierSpool('sigkill');
    await copyFile(await fixtureJob(t.root, 'long', ''), path.join(t.queue, 'long.img'));
    const { REPO } = await import('../helpers.js');
    const child = spawn(path.join(REPO, 'jobrunner'), t.args, { env: { ...process.env, ...t.env, FAKEQEMU_MODE: 'run-hang' }, stdio: 'ignore' });
    const lease = await waitFor('a qemu pid in the lease', async () => {
      for (const id of await ls(path.join(t.queue, '.running'))) {
        const l = JSON.parse(await readFile(path.join(t.queue, '.running', id, 'lease.json'), 'utf8').catch(() => '{}')) as { qemuPid?: number | null };
        if (l.qemuPid) return { ...l, id };
      }
      return null;
    }, 60_000);
    child.kill('SIGKILL');
    await waitFor('qemu to die with its service (pdeathsig)', async () => { try { process.kill(lease.qemuPid!, 0); return false; } catch { return true; } });
    const quick = await fakeQemu(await mkdtemp(path.join(t.root, 'q2-')), 'ok');
    const svc = await runOnce(t, ['--qemu', quick]);
    expect(svc.logged('killed a qemu left by a previous run')).toEqual([]);
    expect(await statusOf(t, 'long.img')).toMatchObject({ status: 'succeeded', attempt: 2 });
  });
});
