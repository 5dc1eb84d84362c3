// --isolation unshare under attack: one --once service run (concurrency 2) over jobs that try to
// escape the sandbox (write or read outside /job, signal or trace host processes, network, mount,
// mknod, clock, modules, reboot), exhaust it (fork bomb, memory eater, filling /job, the root layer
// and /tmp, console flood), or refuse to die (TERM ignored, fake markers, init killed), plus an
// image carrying set-uid, device and FIFO entries. The ledger at the end: jobs lost, host files
// modified, processes left, where "processes" are only ours: the sandbox's id range (dedicated to
// it) and anything holding files under this suite's spool. Then, outside the service: another
// unprivileged host user cannot read a running job's files through its scratch directory.
import { spawn } from 'node:child_process';
import { copyFile, readFile, readdir, rename, stat } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSettings } from '../../src/config.js';
import { loadBaseImage } from '../../src/image/base.js';
import { runJobUnshare } from '../../src/unshare/run.js';
import { shiftedName } from '../../src/unshare/shift.js';
import { BASE_DIR, jobrunner, makeJob, runProc, scratch } from '../helpers.js';
import { Ledger, processesHolding } from './lib/ledger.js';
import { allStatuses, makeSpool, sleep, startService, statusOf, waitFor, type Spool } from './lib/spool.js';
import { unshareJobId } from '../../src/unshare/sweep.js';
import { buildAll, results } from './unshare/jobs.js';

const CAN = existsSync(path.join(BASE_DIR, 'default', 'image.json')) && process.getuid?.() === 0 && existsSync('/usr/bin/bwrap');
const ID_BASE = 700000000;
const S = { timeoutS: 20, graceS: 3, memoryMiB: 256, pids: 256, logCap: 65536 };
const tag = `${process.pid}`;

/** Spools of this suite: a process in a cgroup of another one's job (a bench, another run) is not ours. */
const ourSpools: string[] = [];

/**
 * Host pids in the sandbox's id range (nothing else on the host uses it) that are ours: not in the
 * cgroup of another spool's or another `jobrunner run`'s sandbox. One with no such cgroup counts.
 */
async function sandboxPids(): Promise<Array<{ pid: number; name: string; capEff: string; nnp: string; cgroup: string }>> {
  const out: Array<{ pid: number; name: string; capEff: string; nnp: string; cgroup: string }> = [];
  const mine = ourSpools.map((q) => unshareJobId(q, ''));
  for (const p of await readdir('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    const st = await readFile(`/proc/${p}/status`, 'utf8').catch(() => '');
    const uid = Number(/^Uid:\s+(\d+)/m.exec(st)?.[1] ?? -1);
    const cgroup = await readFile(`/proc/${p}/cgroup`, 'utf8').catch(() => '');
    const group = /jobrunner-unshare-([^/\n]+)/.exec(cgroup)?.[1];
    if (group !== undefined && !mine.some((m) => group.startsWith(m))) continue;
    if (uid >= ID_BASE && uid < ID_BASE + 65536) {
      out.push({ pid: Number(p), name: /^Name:\s+(.*)$/m.exec(st)?.[1] ?? '', capEff: /^CapEff:\s+(\w+)/m.exec(st)?.[1] ?? '', nnp: /^NoNewPrivs:\s+(\d)/m.exec(st)?.[1] ?? '', cgroup: group ?? '(none)' });
    }
  }
  return out;
}

/** Loaded host kernel modules (a kernel without module support has no /proc/modules: the same answer before and after). */
async function moduleList(): Promise<string> {
  const t = await readFile('/proc/modules', 'utf8').catch(() => '(no module support)');
  return t.split('\n').map((l) => l.split(' ')[0]).sort().join(' ');
}

/** Files attached to loop devices right now. */
async function loopBackings(): Promise<string[]> {
  const out: string[] = [];
  for (const d of await readdir('/sys/block').catch(() => [])) {
    if (!d.startsWith('loop')) continue;
    const f = await readFile(`/sys/block/${d}/loop/backing_file`, 'utf8').catch(() => '');
    if (f.trim()) out.push(f.trim());
  }
  return out;
}

describe.skipIf(!CAN)('unshare isolation under attack (real base image, one service run)', () => {
  const ledger = new Ledger();
  let spool: Spool;
  let hostSleep: ReturnType<typeof spawn>;
  let modulesBefore: string;
  const seenLoops = new Set<string>();
  const seenProcs = new Map<number, { name: string; capEff: string; nnp: string }>();
  let serviceMs = 0;
  let peakSandboxProcs = 0;
  let submitted = 0;
  let serviceOut = '';
  const log = async (name: string): Promise<Record<string, string>> => {
    const st = await statusOf(spool, name);
    return results(await readFile(path.join(st.dir === 'done' ? spool.done : spool.failed, `${st.publishedAs}.log`), 'latin1'));
  };

  beforeAll(async () => {
    const work = await scratch('adv-unshare');
    // The shifted base root exists before the sentinels are taken (the first run builds it).
    const warm = await makeJob(work, 'warm', 'true');
    expect((await jobrunner(['run', '--isolation', 'unshare', warm, '--quiet'])).code).toBe(0);
    const base = await loadBaseImage(BASE_DIR, 'default');
    hostSleep = spawn('sleep', ['900'], { stdio: 'ignore' });
    const secret = path.join(work, 'secret.txt');
    await (await import('node:fs/promises')).writeFile(secret, 'host secret\n');
    const hostDir = path.join(work, 'hostdir');
    await (await import('node:fs/promises')).mkdir(hostDir);
    for (const f of [secret, '/etc/passwd', '/etc/hostname', path.join(BASE_DIR, 'default', 'image.json')]) await ledger.watchSentinel(f);
    for (const f of [base.root, path.join('/var/cache/jobrunner/unshare', shiftedName(base, ID_BASE))]) await ledger.watchSentinel(f, false);
    await ledger.watchSentinel(hostDir, false);
    modulesBefore = await moduleList();
    const images = await buildAll(path.join(work, 'jobs'), { secret, hostDir, hostPid: hostSleep.pid!, tag });
    images.set('trivial.img', await makeJob(work, 'trivial', 'mkdir -p /job/output; echo ok > /job/output/ok'));
    spool = await makeSpool('unshare', ['--isolation', 'unshare', '--once', '--concurrency', '2', '--timeout', `${S.timeoutS}s`,
      '--kill-grace', `${S.graceS}s`, '--memory', `${S.memoryMiB}M`, '--unshare-pids', String(S.pids), '--unshare-scratch', '256M',
      '--log-cap', String(S.logCap)]);
    ourSpools.push(spool.queue);
    submitted = images.size;
    for (const [name, img] of images) {
      await copyFile(img, path.join(spool.queue, `.${name}.part`));
      await rename(path.join(spool.queue, `.${name}.part`), path.join(spool.queue, name));
      ledger.expectResult(spool, name);
    }
    const sampler = setInterval(() => {
      void loopBackings().then((l) => l.forEach((f) => seenLoops.add(f)));
      void sandboxPids().then((ps) => { peakSandboxProcs = Math.max(peakSandboxProcs, ps.length); ps.forEach((p) => seenProcs.set(p.pid, p)); });
    }, 200);
    const t = Date.now();
    const r = await jobrunner([...spool.args], { env: spool.env, timeoutMs: 600_000 });
    clearInterval(sampler);
    serviceMs = Date.now() - t;
    serviceOut = r.stdout + r.stderr;
    expect(r.code, serviceOut.slice(-3000)).toBe(0);
    await ledger.auditSpool(spool);
  }, 900_000);

  afterAll(async () => {
    hostSleep?.kill('SIGKILL');
    if (!spool) return;
    const left = [...(await sandboxPids()).map((p) => p.pid), ...(await processesHolding(spool.root))];
    ledger.recordQemuLeft('after the unshare run', left);
    const f = await ledger.figures();
    console.log(`[adversarial unshare] jobs lost: ${f.jobsLost}; host files modified: ${f.hostFilesModified}; processes left: ${f.qemuLeft} (service run ${Math.round(serviceMs / 1000)}s)`);
    console.log(`[adversarial unshare] detail: ${JSON.stringify(f.detail)}`);
  });

  it('escape attempts: nothing outside the sandbox is visible, writable, signalable or traceable', async () => {
    const r = await log('escape.img');
    expect(r).toMatchObject({
      'write-etc': 'ok', 'write-root': 'ok', // into the throwaway layer...
      'write-hostdir': 'ok', // ...including a directory named like a host one: it is created inside
      secret: 'absent', work: 'absent', disk: 'absent', sys: 'absent', hostproc: 'absent',
      'kill-host': 'denied', ptrace: 'denied', 'ptrace-init': 'ok', // its own pid 1 (same uid): allowed, and it stopped it...
      mount: 'denied', remount: 'denied', mknod: 'denied', chroot: 'denied',
      // No user namespace of its own (where it would hold every capability again), by any call.
      userns: 'denied', 'userns-root': 'denied', 'userns-clone': 'denied',
      clock: 'denied', hostname: 'denied', modprobe: 'denied', insmod: 'denied', reboot: 'denied', 'net-link': 'denied',
      tcp: 'denied', links: 'lo ', 'setuid-su': 'denied', uid: '0', capeff: '0000000000000000', pid1: 'bwrap',
    });
    expect(Number(r.procs)).toBeLessThan(10);
    // ...yet the sandbox ended right after the init's end marker, with the job's status, not at --timeout.
    const st = await statusOf(spool, 'escape.img');
    expect(st).toMatchObject({ status: 'succeeded', exitCode: 0 });
    expect((Date.parse(st.finishedAt) - Date.parse(st.startedAt!)) / 1000).toBeLessThan(S.timeoutS);
    expect(existsSync(`/etc/jr-escape-${tag}`)).toBe(false);
    expect(existsSync(`/jr-escape-${tag}`)).toBe(false);
    expect(hostSleep.exitCode).toBeNull(); // the host process it tried to kill is alive
    expect(process.kill(hostSleep.pid!, 0)).toBe(true);
    expect(await moduleList()).toBe(modulesBefore);
    expect(await ledger.modifiedSentinels()).toEqual([]);
  });

  it('the network is only a loopback: no TCP, no DNS', async () => {
    expect(await log('net.img')).toMatchObject({ tcp: 'denied', dns: 'denied', links: 'lo ' });
  });

  it('an image with a set-uid binary, a device node and a FIFO arrives with none of them; a symlink stays a link inside', async () => {
    expect(await statusOf(spool, 'specials.img')).toMatchObject({ status: 'succeeded' });
    expect(await log('specials.img')).toMatchObject({ suid: 'clear', dev: 'absent', fifo: 'absent', link: '/etc/shadow' });
  });

  it('a fork bomb stops at the pids limit (seen from the host) and the job keeps control', async () => {
    const st = await statusOf(spool, 'forkbomb.img');
    expect(st).toMatchObject({ status: 'succeeded' });
    const r = await log('forkbomb.img');
    expect(r).toMatchObject({ survived: '1' });
    // Counted inside without forking (a glob over /proc): the bomb really ran, and stopped at the limit.
    expect(Number(r.peak)).toBeGreaterThan(S.pids / 2);
    // A glob over /proc is not one snapshot: pids that exit and pids forked during the walk are both
    // listed, so under load the sample passes the cgroup's limit by more than a few (seen: 257 and
    // 272 of 256). The limit itself is the kernel's (pids.max); this bound only says the bomb did not
    // run away past it (the host-side sample below bounds the whole id range as well).
    expect(Number(r.peak)).toBeLessThanOrEqual(2 * S.pids);
    // From the host, sampled: every process of the id range at once stayed within two jobs' limits.
    expect(peakSandboxProcs).toBeLessThanOrEqual(2 * S.pids + 8);
  });

  it('a memory eater is OOM-killed inside the memory cgroup; the job goes on', async () => {
    expect(await statusOf(spool, 'memhog.img')).toMatchObject({ status: 'succeeded' });
    expect(await log('memhog.img')).toMatchObject({ rc: '137', after: 'alive' });
  });

  it('filling /job, the root layer and /tmp ends in ENOSPC; the result image did not grow', async () => {
    expect(await log('filljob.img')).toMatchObject({ fill: '1', done: '1' });
    expect(await log('fillroot.img')).toMatchObject({ root: '1', tmp: '1', done: '1' });
    const st = await statusOf(spool, 'filljob.img');
    expect(st.status).toBe('succeeded');
    const out = path.join(spool.root, 'filljob-result.img');
    await (await import('node:util')).promisify((await import('node:child_process')).execFile)('sh', ['-c', 'xz -dc -- "$1" > "$2"', 'sh', path.join(spool.done, 'filljob.img.xz'), out]);
    expect((await stat(out)).size).toBe(st.input.bytes);
  });

  it('a console flood is capped in the log and the exit marker is still found', async () => {
    const st = await statusOf(spool, 'flood.img');
    expect(st).toMatchObject({ status: 'succeeded', exitCode: 0 });
    expect(st.console!.truncated).toBe(true);
    expect((await stat(path.join(spool.done, 'flood.log'))).size).toBeLessThan(S.logCap + 1024);
  });

  it('a job that ignores TERM (and a setsid child that does too) is killed with its namespace at --timeout', async () => {
    const st = await statusOf(spool, 'ignoreterm.img');
    expect(st).toMatchObject({ status: 'timeout', exitCode: null, reason: `the job ran past its ${S.timeoutS}s limit` });
    expect((Date.parse(st.finishedAt) - Date.parse(st.startedAt!)) / 1000).toBeLessThan(S.timeoutS + S.graceS + 15);
  });

  it('fake markers (wrong nonce) change nothing; killing the sandbox init is a crash, not a success', async () => {
    expect(await statusOf(spool, 'fakemarkers.img')).toMatchObject({ status: 'timeout' });
    const st = await statusOf(spool, 'killinit.img');
    expect(st).toMatchObject({ status: 'failed', exitCode: null });
    expect(st.reason).toMatch(/without reporting an exit status/);
  });

  it('the sandboxes ran in the id range with no capabilities and no_new_privs; no job image was loop-attached', async () => {
    const procs = [...seenProcs.values()];
    expect(procs.length).toBeGreaterThan(5);
    for (const p of procs) expect([p.name, p.capEff, p.nnp]).toEqual([p.name, '0000000000000000', '1']);
    expect([...seenLoops].filter((f) => f.startsWith(spool.root))).toEqual([]);
    expect([...seenLoops].some((f) => /jobrunner-unshare-.*\/job\.img$/.test(f))).toBe(true); // our trusted copies were
    expect(await statusOf(spool, 'trivial.img')).toMatchObject({ status: 'succeeded', accel: 'unshare' });
  });

  it('ledger: jobs lost 0, host files modified 0, processes left 0; no cgroup or mount of ours left', async () => {
    const inRange = await sandboxPids();
    const left = [...inRange.map((p) => p.pid), ...(await processesHolding(spool.root))];
    const f = await ledger.figures();
    expect([f.jobsLost, f.hostFilesModified, left.length], `left: ${JSON.stringify(inRange)}`).toEqual([0, 0, 0]);
    const ids = (await allStatuses(spool)).map((s) => unshareJobId(spool.queue, s.id));
    expect(ids.length).toBe(submitted);
    const info = await readFile('/proc/self/mountinfo', 'utf8');
    for (const id of ids) {
      expect(info).not.toContain(`jobrunner-unshare-${id}-`);
      for (const c of ['pids', 'cpu', 'freezer']) expect(existsSync(`/sys/fs/cgroup/${c}/jobrunner-unshare-${id}`)).toBe(false);
    }
  });

  it('a service killed with SIGKILL mid-job takes its sandbox with it; the next start unmounts, removes and reruns', async () => {
    const sp = await makeSpool('unshare-kill', ['--isolation', 'unshare', '--timeout', '15s']);
    ourSpools.push(sp.queue);
    const img = await makeJob(sp.root, 'slow', 'if [ -e /job/ran-once ]; then echo second; exit 0; fi; touch /job/ran-once; sleep 300');
    await copyFile(img, path.join(sp.queue, '.slow.img.part'));
    await rename(path.join(sp.queue, '.slow.img.part'), path.join(sp.queue, 'slow.img'));
    ledger.expectResult(sp, 'slow.img');
    const svc = startService(sp);
    const prefix = `jobrunner-unshare-${unshareJobId(sp.queue, '')}`;
    await waitFor('the sandbox to run', async () => (await readFile('/proc/self/mountinfo', 'utf8')).includes(prefix) && (await sandboxPids()).length > 0, 120_000);
    await sleep(1000);
    svc.child.kill('SIGKILL');
    await svc.exited;
    // --die-with-parent and setpriv's pdeathsig: nothing of the sandbox survives the service.
    await waitFor('the sandbox to die with the service', async () => (await sandboxPids()).length === 0, 15_000);
    expect((await readFile('/proc/self/mountinfo', 'utf8')).includes(prefix)).toBe(true); // its mounts are still there...
    const again = await jobrunner([...sp.args, '--once'], { env: sp.env, timeoutMs: 300_000 });
    expect(again.code, again.stdout.slice(-2000)).toBe(0);
    expect(again.stdout).toContain('removed unshare scratch directories and cgroups left by a previous run');
    expect((await readFile('/proc/self/mountinfo', 'utf8')).includes(prefix)).toBe(false); // ...until the next start
    expect((await readdir((await import('node:os')).tmpdir())).filter((e) => e.startsWith(prefix))).toEqual([]);
    // The rerun starts from the untouched input (the first attempt's /job was a copy): it sleeps again, so --timeout.
    const st = await statusOf(sp, 'slow.img');
    expect(st).toMatchObject({ attempt: 2, status: 'timeout' });
    await ledger.auditSpool(sp);
    expect((await processesHolding(sp.root)).length + (await sandboxPids()).length).toBe(0);
  }, 400_000);
});

describe.skipIf(!CAN)('a running unshare job\'s files, seen by another host user', () => {
  it('nobody on the host can list or read its /job or its root through the scratch directory', async () => {
    const work = await scratch('adv-unshare-peek');
    const base = await loadBaseImage(BASE_DIR, 'default');
    const { settings } = loadSettings(['--isolation', 'unshare', '--timeout', '120s', '--kill-grace', '2s', '--memory', '256M'], {});
    const img = await makeJob(work, 'private', `umask 022; echo job-secret > /job/secret; echo root-secret > /etc/jr-secret-${tag}; sleep 110`);
    const id = `adv-peek-${tag}`;
    const stop = new AbortController();
    const ran = runJobUnshare({ image: img, base, settings, logPath: path.join(work, 'private.log'), id, signal: stop.signal });
    try {
      const dir = await waitFor('the job to write its files', async () => {
        const e = (await readdir(os.tmpdir())).find((x) => x.startsWith(`jobrunner-unshare-${id}-`));
        const d = e && path.join(os.tmpdir(), e);
        return d && existsSync(path.join(d, 'job', 'secret')) && existsSync(path.join(d, 'merged', 'etc', `jr-secret-${tag}`)) ? d : null;
      }, 60_000, 100);
      // Root sees them (the paths are right; the files are world-readable where they are)...
      expect(await readFile(path.join(dir, 'job', 'secret'), 'utf8')).toBe('job-secret\n');
      expect(await readFile(path.join(dir, 'merged', 'etc', `jr-secret-${tag}`), 'utf8')).toBe('root-secret\n');
      // ...another unprivileged host user does not.
      const asNobody = (cmd: string): Promise<{ code: number | null; stdout: string; stderr: string }> =>
        runProc('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--', 'sh', '-c', cmd, 'sh', dir]);
      for (const cmd of ['cat "$1/job/secret"', `cat "$1/merged/etc/jr-secret-${tag}"`, 'ls "$1/job"', 'ls "$1/merged/etc"', 'ls "$1"', 'head -c1 "$1/job.img"']) {
        const r = await asNobody(`${cmd} >/dev/null && echo READ`);
        expect([cmd, r.stdout.trim()], r.stderr).toEqual([cmd, '']);
        expect(r.stderr).toMatch(/Permission denied/);
      }
    } finally {
      // Ended and cleaned up before the test ends, whatever it found (a failed check must not
      // leave the sandbox's mounts and cgroups behind).
      stop.abort();
      await ran.catch(() => undefined);
    }
    expect((await ran).end).toBe('aborted');
    expect((await readdir(os.tmpdir())).filter((x) => x.startsWith(`jobrunner-unshare-${id}-`))).toEqual([]);
  }, 180_000);
});
