// Build dependencies under --isolation unshare (issues 11 and 12), real base image and Debian's
// archive, no qemu: the packages are resolved and fetched on the host as for the VM, installed by
// apt inside an install sandbox (its user namespace's root, INSTALL_CAPS only, no network) into an
// ext4 layer whose upper/ later jobs stack read-only under their own throwaway layer. dwz shows the
// layer, the cache hit, `jobrunner run` on it, and a hostile job leaving it unchanged; GNU hello's
// full Debian build (dpkg-buildpackage -us -uc -b, make check included) goes through the service,
// and its .deb is checked with dpkg-deb and installed and run in a joot environment.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobStatus } from '../../src/spool/record.js';
import { unshareJobId } from '../../src/unshare/sweep.js';
import { CAN_UNSHARE, REPO, jobTree, jobrunner, runProc, scratch, waitFor } from '../helpers.js';
import { debianSource } from '../lib/debian-source.js';
import { addToken, startApiService } from '../http-lib.js';

let root = '';
let cache = '';
const U = ['--isolation', 'unshare'];
const sha256 = async (f: string): Promise<string> => createHash('sha256').update(await readFile(f)).digest('hex');
const status = async (dir: string, name: string): Promise<JobStatus> => JSON.parse(await readFile(path.join(root, dir, `${name}.json`), 'utf8')) as JobStatus;

async function job(name: string, script: string, manifest: unknown): Promise<void> {
  const tree = await jobTree(path.join(root, 'trees', name), script, { 'jobrunner.json': JSON.stringify(manifest) });
  const r = await runProc(path.join(REPO, 'scripts', 'mkimage'), [tree, '-o', path.join(root, 'queue', `${name}.img`), '--extra', '32M']);
  if (r.code !== 0) throw new Error(r.stderr);
}
async function serviceOnce(timeout = '10m'): Promise<string> {
  const r = await jobrunner([...U, '--queue', path.join(root, 'queue'), '--done', path.join(root, 'done'), '--failed', path.join(root, 'failed'),
    '--settle', '200ms', '--once', '--concurrency', '2', '--deps-cache', cache, '--timeout', timeout, '--memory', '2G'],
  { env: { ...process.env, JOBRUNNER_CONFIG: path.join(root, 'c.json') }, timeoutMs: 1_500_000 });
  if (r.code !== 0) throw new Error(`service exited ${r.code}: ${r.stderr.slice(-3000)}`);
  return r.stderr;
}

const DWZ = { packages: ['dwz (>= 0.13)'] };

describe.skipIf(!CAN_UNSHARE)('declared packages under --isolation unshare (real base image, Debian archive)', () => {
  let layerSha = '';
  let layerFile = '';
  beforeAll(async () => {
    root = await scratch('unshare-deps');
    cache = path.join(root, 'deps-cache');
    await chmod(root, 0o755); // apt's _apt download user must reach the cache
    await mkdir(path.join(root, 'queue'));
    await writeFile(path.join(root, 'c.json'), '{}');
    await job('first', 'set -e; command -v dwz; mkdir -p output; dpkg-query -W dwz > output/dwz.txt; id -u', DWZ);
    await serviceOnce();
  }, 1_500_000);

  it('installs the packages in a sandbox into an ext4 layer and records it', async () => {
    const st = await status('done', 'first');
    expect(st.status, st.reason).toBe('succeeded');
    expect(st.accel).toBe('unshare');
    expect(st.deps).toMatchObject({ requested: ['dwz (>= 0.13)'], cacheHit: false });
    expect(st.deps!.resolved).toEqual([expect.stringMatching(/^dwz:amd64=0\.\d+/)]);
    expect(st.deps!.durations.install).toBeGreaterThan(0);
    layerFile = path.join(cache, 'layers', `${st.deps!.layer!.key}.ext4`);
    layerSha = await sha256(layerFile);
    expect(layerSha).toBe(st.deps!.layer!.sha256);
    const rec = JSON.parse(await readFile(path.join(cache, 'layers', `${st.deps!.layer!.key}.json`), 'utf8')) as { format: string };
    expect(rec.format).toBe('ext4');
    // The layer is an upper directory holding dwz, ids shifted into the sandbox's range; nothing else at its top.
    const dbg = (cmd: string) => runProc('debugfs', ['-R', cmd, layerFile], { env: { PATH: `${process.env.PATH}:/usr/sbin:/sbin` } });
    expect((await dbg('ls /')).stdout.split(/\s+/).filter((n) => /^[a-z+]/.test(n)).sort()).toEqual(['lost+found', 'upper']);
    const stat = await dbg('stat /upper/usr/bin/dwz');
    expect(stat.stdout).toMatch(/User:\s+700000000\s+Group:\s+700000000/);
    expect((await readFile(path.join(root, 'done', 'first.log'), 'utf8'))).toMatch(/^0\r?$/m);
  });

  describe('later jobs on the same package set', () => {
    beforeAll(async () => {
      await job('again', 'set -e; command -v dwz; cat /proc/self/status | grep ^Cap', DWZ);
      // Hostile: deletes and overwrites what it can on its root, then tries to reach the layer's file.
      await job('vandal', 'rm -rf /usr/bin/dwz /var/lib/dpkg/status /usr/lib 2>&1 | tail -1; echo owned > /etc/passwd; ' +
        'for d in /dev/loop*; do dd if=/dev/urandom of=$d bs=1M count=1 conv=notrunc 2>&1 | tail -1; done; sync; exit 0', DWZ);
      await serviceOnce();
    }, 1_500_000);

    it('run on the cached layer: nothing installed, resolve + fetch under 5 s, no capabilities', async () => {
      const st = await status('done', 'again');
      expect(st.status, st.reason).toBe('succeeded');
      expect(st.deps).toMatchObject({ cacheHit: true, downloaded: { debs: 0, bytes: 0 } });
      expect(st.deps!.durations.install).toBeNull();
      expect(st.deps!.durations.resolve + st.deps!.durations.fetch).toBeLessThan(5);
      expect(st.deps!.layer!.sha256).toBe(layerSha);
      expect(await readFile(path.join(root, 'done', 'again.log'), 'utf8')).toMatch(/^CapEff:\s+0000000000000000\r?$/m);
    });

    it('a job that writes everywhere on its root leaves the cached layer unchanged', async () => {
      const st = await status('done', 'vandal');
      expect(st.status, st.reason).toBe('succeeded');
      expect((await readdir(path.join(cache, 'layers'))).filter((f) => /\.(ext4|qcow2)$/.test(f))).toHaveLength(1);
      expect(await sha256(layerFile)).toBe(layerSha);
    });

    it('jobrunner run --isolation unshare runs on the cached layer too', async () => {
      await job('fg', 'set -e; command -v dwz', DWZ);
      const rec = path.join(root, 'fg.json');
      const r = await jobrunner(['run', ...U, path.join(root, 'queue', 'fg.img'), '--quiet', '--status', rec, '--deps-cache', cache, '--timeout', '5m'],
        { env: { ...process.env, JOBRUNNER_CONFIG: path.join(root, 'c.json') }, timeoutMs: 600_000 });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/packages: 1 resolved, layer [0-9a-f]{12} \(cached\)/);
      const st = JSON.parse(await readFile(rec, 'utf8')) as JobStatus;
      expect(st).toMatchObject({ status: 'succeeded', accel: 'unshare', deps: { cacheHit: true, layer: { sha256: layerSha } } });
    }, 600_000);
  });
});

/** Files under `dir` attached to loop devices right now (sysfs). */
async function loopsUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const d of await readdir('/sys/block').catch(() => [] as string[])) {
    const f = d.startsWith('loop') ? (await readFile(`/sys/block/${d}/loop/backing_file`, 'utf8').catch(() => '')).trim() : '';
    if (f.startsWith(`${dir}/`)) out.push(f);
  }
  return out;
}

/** Pids of the live processes below `pid` (by parent pid). */
async function descendants(pid: number): Promise<number[]> {
  const parent = new Map<number, number>();
  for (const p of await readdir('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    const st = await readFile(`/proc/${p}/stat`, 'utf8').catch(() => '');
    const ppid = Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid) parent.set(Number(p), ppid);
  }
  const out: number[] = [];
  for (const p of parent.keys()) {
    for (let q = parent.get(p); q; q = parent.get(q)) if (q === pid) { out.push(p); break; }
  }
  return out;
}

describe.skipIf(!CAN_UNSHARE)('a service killed with SIGKILL in the middle of an unshare deps install', () => {
  it('the next start unmounts and removes the interrupted build (layer, overlay, cgroups), then installs again', async () => {
    root = await scratch('unshare-deps-kill');
    cache = path.join(root, 'deps-cache');
    await chmod(root, 0o755);
    await mkdir(path.join(root, 'queue'));
    await writeFile(path.join(root, 'c.json'), '{}');
    await job('cut', 'set -e; command -v dwz', DWZ);
    const queue = path.join(root, 'queue');
    const args = [...U, '--queue', queue, '--done', path.join(root, 'done'), '--failed', path.join(root, 'failed'), '--settle', '200ms',
      '--deps-cache', cache, '--timeout', '10m', '--memory', '1G'];
    const env = { ...process.env, JOBRUNNER_CONFIG: path.join(root, 'c.json'), JOBRUNNER_PREBUILT: '1' };
    const layers = path.join(cache, 'layers');
    const svc = spawn(path.join(REPO, 'jobrunner'), args, { env, stdio: 'ignore' });
    const exited = new Promise((r) => svc.on('exit', r));
    // The install sandbox runs: the new layer (in its .build- directory) is loop-mounted and the
    // service has processes in the sandbox's id range below it.
    const inRange = async (): Promise<number[]> => {
      const out: number[] = [];
      for (const p of await descendants(svc.pid!)) {
        const uid = Number(/^Uid:\s+(\d+)/m.exec(await readFile(`/proc/${p}/status`, 'utf8').catch(() => ''))?.[1] ?? -1);
        if (uid >= 700000000 && uid < 700000000 + 65536) out.push(p);
      }
      return out;
    };
    const sandbox = await waitFor('the install sandbox', async () => ((await loopsUnder(layers)).length > 0 && (await inRange()).length >= 2 ? inRange() : null), 600_000, 50);
    svc.kill('SIGKILL');
    await exited;
    await waitFor('the install sandbox to die with the service', async () => sandbox.every((p) => !existsSync(`/proc/${p}`)), 15_000);
    // What the crash left: the layer still loop-mounted read-write, in its build directory.
    expect(await loopsUnder(layers)).toHaveLength(1);
    expect((await readdir(layers)).filter((f) => f.startsWith('.build-'))).toHaveLength(1);

    const r = await jobrunner([...args, '--once'], { env, timeoutMs: 900_000 });
    expect(r.code, r.stderr.slice(-3000)).toBe(0);
    expect(r.stdout + r.stderr).toContain('removed deps layer builds left by a previous run');
    expect((await readdir(layers)).filter((f) => f.startsWith('.build-'))).toEqual([]);
    expect(await loopsUnder(layers)).toEqual([]);
    const prefix = `jobrunner-unshare-${unshareJobId(queue, '')}`;
    expect(await readFile('/proc/self/mountinfo', 'utf8')).not.toContain(prefix);
    expect((await readdir(os.tmpdir())).filter((e) => e.startsWith(prefix))).toEqual([]);
    for (const c of ['memory', 'pids', 'cpu', 'freezer']) {
      expect((await readdir(`/sys/fs/cgroup/${c}`).catch(() => [] as string[])).filter((e) => e.startsWith(prefix))).toEqual([]);
    }
    const st = await status('done', 'cut');
    expect(st.status, st.reason).toBe('succeeded');
    expect(st).toMatchObject({ attempt: 2, deps: { cacheHit: false } });
  }, 1_200_000);
});

describe.skipIf(!CAN_UNSHARE)('GNU hello\'s Debian source package built through the service under --isolation unshare', () => {
  let jootHome = '';
  let deb = '';
  let dsc = '';
  const joot = (args: string[]) => runProc(path.join(REPO, 'scripts', 'joot'), args,
    { env: { ...process.env, JOOT_HOME: path.join(jootHome, 'home'), JOOT_CONFIG: path.join(jootHome, 'joot.cfg') }, timeoutMs: 300_000 });
  beforeAll(async () => {
    root = await scratch('unshare-hello');
    cache = path.join(root, 'deps-cache');
    await chmod(root, 0o755);
    await mkdir(path.join(root, 'queue'));
    await writeFile(path.join(root, 'c.json'), '{}');
    dsc = await debianSource('hello');
    const r = await runProc(path.join(REPO, 'scripts', 'mkjob-deb'), [dsc, '-o', path.join(root, 'queue', 'hello.img'), '--extra', '512M']);
    if (r.code !== 0) throw new Error(r.stderr);
    await serviceOnce('30m');
  }, 1_800_000);
  afterAll(async () => {
    if (!jootHome) return;
    await joot(['delete', 'hello']);
    await rm(jootHome, { recursive: true, force: true });
  });

  it('publishes /job/output with a valid hello .deb (dpkg-deb --info, --contents), make check passed', async () => {
    const st = await status('done', 'hello');
    expect(st.status, st.reason).toBe('succeeded');
    expect(st.accel).toBe('unshare');
    expect(st.deps!.resolved).toEqual(expect.arrayContaining([expect.stringMatching(/^debhelper:all=13\./)]));
    expect(st.deps!.cacheHit).toBe(false);
    const out = path.join(root, 'out');
    await mkdir(out);
    const tar = await runProc('tar', ['-C', out, '-xJf', path.join(root, 'done', 'hello.output.tar.xz')]);
    expect(tar.code, tar.stderr).toBe(0);
    const files = await readdir(path.join(out, 'output'));
    const name = files.find((f) => /^hello_.*_amd64\.deb$/.test(f));
    expect(name, files.join(' ')).toBeDefined();
    deb = path.join(out, 'output', name!);
    const info = await runProc('dpkg-deb', ['--info', deb]);
    expect(info.code, info.stderr).toBe(0);
    expect(info.stdout).toMatch(/^ Package: hello$/m);
    const contents = await runProc('dpkg-deb', ['--contents', deb]);
    expect(contents.stdout).toMatch(/ \.\/usr\/bin\/hello$/m);
    const log = await readFile(path.join(root, 'done', 'hello.log'), 'utf8');
    expect(log).toMatch(/dpkg-buildpackage: info: binary-only upload/);
    expect(log).toMatch(/^# PASS: +[1-9]/m);
    expect(log).toMatch(/^# FAIL: +0\r?$/m);
  });

  it('the .deb installs and runs in a joot environment of the base image', async () => {
    expect(deb).not.toBe('');
    jootHome = await scratch('unshare-hello-joot');
    await writeFile(path.join(jootHome, 'joot.cfg'), JSON.stringify({ baseImageDirs: [path.join(REPO, 'base-image')] }));
    expect((await joot(['create', 'hello'])).code).toBe(0);
    const m = await joot(['mount', 'hello']);
    expect(m.code, m.stderr).toBe(0);
    await copyFile(deb, path.join(m.stdout.trim(), 'tmp', 'hello.deb'));
    expect((await joot(['umount', 'hello'])).code).toBe(0);
    const inst = await joot(['enter', 'hello', '--no-home', '--', 'dpkg', '-i', '/tmp/hello.deb']);
    expect(inst.code, inst.stderr + inst.stdout).toBe(0);
    const run = await joot(['enter', 'hello', '--no-home', '--', 'hello']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toBe('Hello, world!\n');
  }, 600_000);

  it('a second build, submitted to the HTTP API with jobrunner submit --dsc --server --wait -o, hits the cached layer', async () => {
    const svc = await startApiService('unshare-hello-api', [...U, '--deps-cache', cache, '--memory', '2G', '--timeout', '30m', '--log-level', 'info']);
    try {
      const token = await addToken(svc, 'remote');
      const out = path.join(svc.root, 'out');
      const r = await jobrunner(['submit', '--dsc', dsc, '--server', svc.url, '--token', token, '--wait', '-o', out], { timeoutMs: 1_200_000 });
      expect(r.code, r.stderr + svc.output().slice(-2000)).toBe(0);
      const files = await readdir(path.join(out, 'output'));
      const name = files.find((f) => /^hello_.*_amd64\.deb$/.test(f));
      expect(name, files.join(' ')).toBeDefined();
      expect(files.some((f) => f.endsWith('.buildinfo')) && files.some((f) => f.endsWith('.changes'))).toBe(true);
      expect((await runProc('dpkg-deb', ['--info', path.join(out, 'output', name!)])).stdout).toMatch(/^ Package: hello$/m);
      // What the server kept and serves: only the output, as the record says.
      const list = (await (await fetch(`${svc.url}/api/v1/jobs`, { headers: { authorization: `Bearer ${token}` } })).json()) as { jobs: Array<{ id: string; record: JobStatus | null }> };
      const job = list.jobs.find((j) => j.record?.status === 'succeeded');
      expect(job, JSON.stringify(list).slice(0, 2000)).toBeDefined();
      const st = job!.record!;
      expect(st.output).toMatchObject({ form: 'output' });
      expect(st.deps).toMatchObject({ cacheHit: true, downloaded: { debs: 0, bytes: 0 } });
      expect(st.deps!.durations.install).toBeNull();
      expect(st.deps!.durations.resolve + st.deps!.durations.fetch).toBeLessThan(5);
      const res = await fetch(`${svc.url}/api/v1/jobs/${job!.id}/result`, { headers: { authorization: `Bearer ${token}` } });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-disposition')).toMatch(/filename="hello_[^"]*\.output\.tar\.xz"/);
      const body = Buffer.from(await res.arrayBuffer());
      expect(body.length).toBe(st.output!.bytes);
      expect(createHash('sha256').update(body).digest('hex')).toBe(st.output!.sha256);
      expect((await readdir(svc.done)).filter((f) => f.endsWith('.img.xz'))).toEqual([]);
    } finally {
      expect(await svc.stop()).toBe(0);
    }
  }, 1_500_000);
});
