// Issue 11 end to end, real qemu and Debian's archive: a job's declared packages are resolved and
// fetched on the host, installed in a VM into a derived layer, reused from the cache by the next
// job; an unknown package is rejected before boot with apt's message; the guest has no network;
// a job that writes everywhere on its root cannot change the cached layer.
import { createHash } from 'node:crypto';
import { chmod, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { JobStatus } from '../../src/spool/record.js';
import { HAVE_BASE, REPO, jobTree, jobrunner, runProc, scratch } from '../helpers.js';

let root = '';
let cache = '';
const sha256 = async (f: string): Promise<string> => createHash('sha256').update(await readFile(f)).digest('hex');
const status = async (dir: string, name: string): Promise<JobStatus> => JSON.parse(await readFile(path.join(root, dir, `${name}.json`), 'utf8')) as JobStatus;

async function job(name: string, script: string, manifest: unknown): Promise<void> {
  const tree = await jobTree(path.join(root, 'trees', name), script, manifest === null ? {} : { 'jobrunner.json': JSON.stringify(manifest) });
  const r = await runProc(path.join(REPO, 'scripts', 'mkimage'), [tree, '-o', path.join(root, 'queue', `${name}.img`), '--extra', '32M']);
  if (r.code !== 0) throw new Error(r.stderr);
}
async function serviceOnce(): Promise<string> {
  const r = await jobrunner(['--queue', path.join(root, 'queue'), '--done', path.join(root, 'done'), '--failed', path.join(root, 'failed'),
    '--settle', '200ms', '--once', '--concurrency', '2', '--deps-cache', cache, '--timeout', '10m', '--boot-timeout', '5m'],
  { env: { ...process.env, JOBRUNNER_CONFIG: path.join(root, 'c.json') }, timeoutMs: 1_200_000 });
  if (r.code !== 0) throw new Error(`service exited ${r.code}: ${r.stderr.slice(-3000)}`);
  return r.stderr;
}

const DWZ = { packages: ['dwz (>= 0.13)'] };

describe.skipIf(!HAVE_BASE)('declared packages through the service (real qemu, Debian archive)', () => {
  beforeAll(async () => {
    root = await scratch('deps-e2e');
    cache = path.join(root, 'deps-cache');
    await chmod(root, 0o755); // apt's _apt download user must reach the cache, as in a real one
    await mkdir(path.join(root, 'queue'));
    await writeFile(path.join(root, 'c.json'), '{}');
    await job('first', 'set -e; command -v dwz; dwz --version 2>&1 | head -1; mkdir -p output; dpkg-query -W dwz > output/dwz.txt', DWZ);
    await job('missing', 'exit 0', { packages: ['no-such-package-jr11'] });
    await job('offline', 'ls /sys/class/net; if apt-get -q -o Acquire::http::Timeout=5 update 2>&1 | tee /job/apt.txt | grep -q "^Err"; then exit 0; fi; exit 9', null);
    await serviceOnce();
  }, 1_500_000);

  it('installs the packages in a VM into a derived layer and records what it resolved', async () => {
    const st = await status('done', 'first');
    expect(st.status, st.reason).toBe('succeeded');
    expect(st.deps).toMatchObject({ requested: ['dwz (>= 0.13)'], cacheHit: false });
    expect(st.deps!.resolved).toEqual([expect.stringMatching(/^dwz:amd64=0\.\d+/)]);
    expect(st.deps!.layer!.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(st.deps!.durations.install).toBeGreaterThan(0);
    const layer = path.join(cache, 'layers', `${st.deps!.layer!.key}.qcow2`);
    expect(await sha256(layer)).toBe(st.deps!.layer!.sha256);
  });

  it('rejects a job naming a package that does not exist, before boot, with apt\'s message', async () => {
    const st = await status('failed', 'missing');
    expect(st.status).toBe('rejected');
    expect(st.reason).toMatch(/apt says:[\s\S]*Depends: no-such-package-jr11 but it is not installable/);
    expect(st.durations.boot).toBeNull();
  });

  it('the guest has no network: no interface but lo, and apt cannot reach the archive', async () => {
    const st = await status('done', 'offline');
    expect(st.status, st.reason).toBe('succeeded');
    const log = await readFile(path.join(root, 'done', 'offline.log'), 'utf8');
    expect(log).toMatch(/^lo\r?$/m);
    expect(log).not.toMatch(/^(eth|ens|enp)\S*\r?$/m);
  });

  describe('a second run with the same packages', () => {
    let layerSha = '';
    beforeAll(async () => {
      layerSha = (await status('done', 'first')).deps!.layer!.sha256;
      await job('again', 'set -e; command -v dwz', DWZ);
      // Hostile: writes, deletes and overwrites everything it can on its root disk.
      await job('vandal', 'rm -rf /usr/bin/dwz /var/lib/dpkg/status; echo owned > /etc/passwd; dd if=/dev/urandom of=/dev/vda bs=1M count=16 conv=notrunc 2>&1; sync; exit 0', DWZ);
      await serviceOnce();
    }, 1_500_000);

    it('boots on the cached layer: no install, resolve + install under 5 s', async () => {
      const st = await status('done', 'again');
      expect(st.status, st.reason).toBe('succeeded');
      expect(st.deps).toMatchObject({ cacheHit: true, downloaded: { debs: 0, bytes: 0 } });
      expect(st.deps!.durations.install).toBeNull();
      expect(st.deps!.durations.resolve + st.deps!.durations.fetch).toBeLessThan(5);
      expect(st.deps!.layer!.sha256).toBe(layerSha);
    });

    it('jobrunner run honours the manifest too and writes the service\'s status record (--status)', async () => {
      await job('fg', 'set -e; command -v dwz', DWZ);
      const img = path.join(root, 'queue', 'fg.img');
      const rec = path.join(root, 'fg.json');
      const r = await jobrunner(['run', img, '--quiet', '--status', rec, '--deps-cache', cache, '--timeout', '10m', '--boot-timeout', '5m'],
        { env: { ...process.env, JOBRUNNER_CONFIG: path.join(root, 'c.json') }, timeoutMs: 900_000 });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/packages: 1 resolved, layer [0-9a-f]{12} \(cached\)/);
      const st = JSON.parse(await readFile(rec, 'utf8')) as JobStatus;
      expect(st).toMatchObject({ name: 'fg', status: 'succeeded', exitCode: 0, submitted: 'fg.img', attempt: 1, runner: { backend: 'local' } });
      expect(st.deps).toMatchObject({ cacheHit: true, layer: { sha256: layerSha } });
      expect(st.input.sha256).toMatch(/^[0-9a-f]{64}$/);
      expect(st.durations.boot).toBeGreaterThan(0);
    }, 900_000);

    it('a job that writes everywhere on its root leaves the cached layer unchanged', async () => {
      const st = await status('done', 'vandal');
      expect(st.status, st.reason).toBe('succeeded');
      const layers = (await readdir(path.join(cache, 'layers'))).filter((f) => f.endsWith('.qcow2'));
      expect(layers).toHaveLength(1);
      expect(await sha256(path.join(cache, 'layers', layers[0]!))).toBe(layerSha);
    });
  });
});
