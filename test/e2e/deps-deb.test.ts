// Issue 11 end to end with a real Debian source package: base-files (bookworm; native, shell and
// data only, Build-Depends debhelper) fetched with apt-get source --download-only (cached), made
// into a job by scripts/mkjob-deb, its build dependencies resolved on the host and installed in a
// VM into a derived layer, built by dpkg-buildpackage -us -uc -b in the guest, published as
// NAME.output.tar.xz; the .deb is checked on the host with dpkg-deb. A second build of the same
// package, submitted with `jobrunner submit --dsc --wait -o`, boots on the cached layer and its
// .debs land in OUTDIR. (hello's full build takes ~30 min under TCG: bench/deps.)
import { mkdir, readFile, readdir, writeFile, chmod } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { JobStatus } from '../../src/spool/record.js';
import { HAVE_BASE, REPO, jobrunner, runProc, scratch, type ProcResult } from '../helpers.js';
import { debianSource } from '../lib/debian-source.js';

const PKG = 'base-files';
let root = '';
let dsc = '';
let second = '';
const status = async (dir: string, name: string): Promise<JobStatus> => JSON.parse(await readFile(path.join(root, dir, `${name}.json`), 'utf8')) as JobStatus;

async function mkjob(name: string): Promise<void> {
  const r = await runProc(path.join(REPO, 'scripts', 'mkjob-deb'), [dsc, '-o', path.join(root, 'queue', `${name}.img`), '--extra', '512M']);
  if (r.code !== 0) throw new Error(r.stderr);
}
async function serviceOnce(): Promise<void> {
  const r = await jobrunner(['--queue', path.join(root, 'queue'), '--done', path.join(root, 'done'), '--failed', path.join(root, 'failed'),
    '--settle', '200ms', '--once', '--deps-cache', path.join(root, 'deps-cache'), '--timeout', '15m', '--boot-timeout', '5m'],
  { env: { ...process.env, JOBRUNNER_CONFIG: path.join(root, 'c.json') }, timeoutMs: 1_500_000 });
  if (r.code !== 0) throw new Error(`service exited ${r.code}: ${r.stderr.slice(-3000)}`);
}

describe.skipIf(!HAVE_BASE)(`a Debian source package (${PKG}) built through the service`, () => {
  beforeAll(async () => {
    root = await scratch('deps-deb');
    await chmod(root, 0o755); // apt's _apt download user must reach the deps cache
    await mkdir(path.join(root, 'queue'));
    await writeFile(path.join(root, 'c.json'), '{}');
    dsc = await debianSource(PKG);
    await mkjob('first');
    await serviceOnce();
  }, 1_800_000);

  it('publishes only /job/output, holding a valid .deb (dpkg-deb --info, --contents on the host)', async () => {
    const st = await status('done', 'first');
    expect(st.status, st.reason).toBe('succeeded');
    expect((await readdir(path.join(root, 'done'))).sort()).toEqual(['first.json', 'first.log', 'first.output.tar.xz']);
    const out = path.join(root, 'out');
    await mkdir(out);
    const tar = await runProc('tar', ['-C', out, '-xJf', path.join(root, 'done', 'first.output.tar.xz')]);
    expect(tar.code, tar.stderr).toBe(0);
    const files = await readdir(path.join(out, 'output'));
    const deb = files.find((f) => /^base-files_.*_amd64\.deb$/.test(f));
    expect(deb, files.join(' ')).toBeDefined();
    expect(files.some((f) => f.endsWith('.buildinfo'))).toBe(true);
    expect(files.some((f) => f.endsWith('.changes'))).toBe(true);
    const info = await runProc('dpkg-deb', ['--info', path.join(out, 'output', deb!)]);
    expect(info.code, info.stderr).toBe(0);
    expect(info.stdout).toMatch(/^ Package: base-files$/m);
    expect(info.stdout).toMatch(/^ Version: 12\.4\+deb12u\d+$/m);
    const contents = await runProc('dpkg-deb', ['--contents', path.join(out, 'output', deb!)]);
    expect(contents.code, contents.stderr).toBe(0);
    expect(contents.stdout).toMatch(/ \.\/etc\/debian_version$/m);
    expect(contents.stdout).toMatch(/ \.\/usr\/lib\/os-release$/m);
    // The build log is in the console log.
    expect(await readFile(path.join(root, 'done', 'first.log'), 'utf8')).toMatch(/dpkg-buildpackage: info: binary-only upload/);
  });

  it('resolved debhelper with apt, installed it in a VM, and recorded what it installed', async () => {
    const st = await status('done', 'first');
    expect(st.deps).toMatchObject({ cacheHit: false });
    expect(st.deps!.requested).toEqual(expect.arrayContaining(['debhelper-compat (= 13)', 'debhelper (>= 13.10~)']));
    expect(st.deps!.resolved).toEqual(expect.arrayContaining([expect.stringMatching(/^debhelper:all=13\./)]));
    expect(st.deps!.downloaded.debs).toBeGreaterThan(10);
    expect(st.deps!.durations.install).toBeGreaterThan(0);
    expect(st.deps!.layer!.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  describe('a second build of the same package, submitted with jobrunner submit --dsc --wait -o', () => {
    let submitted: ProcResult | null = null;
    beforeAll(async () => {
      // submit makes the job with mkjob-deb, queues it and waits for its status; the service runs meanwhile.
      const submit = jobrunner(['submit', '--dsc', dsc, '--queue', path.join(root, 'queue'), '--wait', '-o', path.join(root, 'submit-out')],
        { env: { ...process.env, JOBRUNNER_DONE: path.join(root, 'done'), JOBRUNNER_FAILED: path.join(root, 'failed') }, timeoutMs: 1_500_000 });
      for (let i = 0; i < 600 && !(await readdir(path.join(root, 'queue'))).some((f) => /^base-files_.*\.img\.xz$/.test(f)); i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
      await serviceOnce();
      submitted = await submit;
      second = (await readdir(path.join(root, 'done'))).find((f) => /^base-files_.*\.json$/.test(f))?.replace(/\.json$/, '') ?? 'missing';
    }, 1_800_000);

    it('exits 0 and leaves the .deb, .buildinfo and .changes in OUTDIR/output', async () => {
      expect(submitted!.code, submitted!.stderr).toBe(0);
      const files = await readdir(path.join(root, 'submit-out', 'output'));
      const deb = files.find((f) => /^base-files_.*_amd64\.deb$/.test(f));
      expect(deb, files.join(' ')).toBeDefined();
      expect(files.some((f) => f.endsWith('.buildinfo')) && files.some((f) => f.endsWith('.changes'))).toBe(true);
      const info = await runProc('dpkg-deb', ['--info', path.join(root, 'submit-out', 'output', deb!)]);
      expect(info.code, info.stderr).toBe(0);
      expect(info.stdout).toMatch(/^ Package: base-files$/m);
    });

    it('boots on the cached layer: nothing installed, resolve + fetch under 5 s, the same .deb', async () => {
      const [a, b] = [await status('done', 'first'), await status('done', second)];
      expect(b.status, b.reason).toBe('succeeded');
      expect(b.deps).toMatchObject({ cacheHit: true, downloaded: { debs: 0, bytes: 0 } });
      expect(b.deps!.durations.install).toBeNull();
      expect(b.deps!.durations.resolve + b.deps!.durations.fetch).toBeLessThan(5);
      expect(b.deps!.layer).toEqual(a.deps!.layer);
      expect(b.deps!.resolved).toEqual(a.deps!.resolved);
    });
  });
});
