// --isolation unshare end to end with the real base image: the job contract of the VM (output,
// exit codes, 127, timeout 124, junk 122, the environment) through `jobrunner run`, and the
// service publishing done/NAME.img.xz + NAME.json (accel "unshare") + NAME.log. No qemu involved:
// each job takes seconds. Needs root (mounts, id maps) and bubblewrap.
import { copyFile, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { JobStatus } from '../../src/spool/record.js';
import { CAN_UNSHARE, REPO, jobTree, jobrunner, makeJob, runProc, scratch } from '../helpers.js';

const extract = (img: string, out: string, ...paths: string[]) => runProc(path.join(REPO, 'scripts', 'extract'), [img, out, ...paths]);
const U = ['--isolation', 'unshare'];

describe.skipIf(!CAN_UNSHARE)('jobrunner run --isolation unshare (real base image)', () => {
  let work: string;
  beforeAll(async () => { work = await scratch('unshare-run'); });

  it('runs a job as root in /job on the base image; extract returns its output, log and exit status', async () => {
    const img = await makeJob(work, 'answer', 'mkdir -p /job/output\necho 42 > /job/output/answer\necho "running as $(id -u) in $(pwd)"\ncat /etc/debian_version\nls -ln /job/output');
    const r = await jobrunner(['run', ...U, img, '--timeout', '2m']);
    expect(r.stderr).toContain('the job succeeded');
    expect(r.stderr).toContain('unshare');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('running as 0 in /job');
    expect(r.stdout).toMatch(/^12\.\d+$/m);
    const out = path.join(work, 'answer.out');
    expect((await extract(img, out)).code).toBe(0);
    expect(await readFile(path.join(out, 'output', 'answer'), 'utf8')).toBe('42\n');
    const all = path.join(work, 'answer.all');
    expect((await extract(img, all, '/construir.log', '/construir.exit')).code).toBe(0);
    expect(await readFile(path.join(all, 'construir.exit'), 'utf8')).toBe('0\n');
    expect(await readFile(path.join(all, 'construir.log'), 'utf8')).toContain('running as 0 in /job');
    // The result is a normal job image: inside-root's files are uid 0 again, not the host range.
    const ls = await runProc('debugfs', ['-R', 'ls -l /output', img], { env: { PATH: `${process.env.PATH}:/usr/sbin` } });
    expect(ls.stdout).toMatch(/100644 \(1\)\s+0\s+0\s+3 .*answer/);
  });

  it('gives the job exactly the documented environment', async () => {
    const img = await makeJob(work, 'env', 'env | sort');
    const r = await jobrunner(['run', ...U, img, '--timeout', '2m']);
    expect(r.code).toBe(0);
    const env = r.stdout.split('\n').filter((l) => /^[A-Z_]+=/.test(l)).sort();
    expect(env).toEqual(['HOME=/root', 'JOB_DIR=/job', 'JOB_OUTPUT=/job/output', 'LANG=C.UTF-8',
      'PATH=/job/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'PWD=/job', 'TERM=dumb', 'USER=root']);
  });

  it('exits with the job\'s status and streams its output', async () => {
    const img = await makeJob(work, 'three', 'echo "about to fail on purpose"\nexit 3');
    const r = await jobrunner(['run', ...U, img, '--timeout', '2m']);
    expect(r.code).toBe(3);
    expect(r.stdout).toContain('about to fail on purpose');
    expect(r.stderr).toContain('the job exited with status 3');
  });

  it('kills a job past --timeout and exits 124', async () => {
    const img = await makeJob(work, 'sleepy', 'echo sleeping\nsleep 600');
    const r = await jobrunner(['run', ...U, img, '--timeout', '8s', '--kill-grace', '2s']);
    expect(r.code).toBe(124);
    expect(r.stderr).toMatch(/ran past its 8s limit/);
    expect(r.ms).toBeLessThan(8_000 + 20_000);
  });

  it('reports 127 when the image has no usable bin/construir', async () => {
    const tree = await jobTree(path.join(work, 'noexec.tree'), 'echo hi');
    await runProc('chmod', ['-x', path.join(tree, 'bin', 'construir')]);
    const img = path.join(work, 'noexec.img');
    expect((await runProc('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', tree, img, '32M'], { env: { PATH: `${process.env.PATH}:/usr/sbin` } })).code).toBe(0);
    const r = await jobrunner(['run', ...U, img, '--timeout', '2m']);
    expect(r.code).toBe(127);
    expect(r.stdout).toContain('/job/bin/construir is missing or not executable');
  });

  it('refuses a junk image (exit 122), before and after the ext superblock check', async () => {
    const junk = path.join(work, 'junk.img');
    await runProc('dd', ['if=/dev/urandom', `of=${junk}`, 'bs=1M', 'count=2']);
    expect((await jobrunner(['run', ...U, junk])).code).toBe(122);
    // A valid superblock over garbage passes the header check; debugfs then cannot read it.
    const half = await makeJob(work, 'half', 'echo hi');
    await runProc('dd', ['if=/dev/urandom', `of=${half}`, 'bs=4096', 'seek=2', 'count=4000', 'conv=notrunc']);
    const r = await jobrunner(['run', ...U, half]);
    expect(r.code).toBe(122);
    expect(r.stderr).toMatch(/could not be used/);
  });
});

describe.skipIf(!CAN_UNSHARE)('the service with --isolation unshare', () => {
  it('publishes done/NAME.img.xz, NAME.json (accel unshare) and NAME.log exactly as from the VM', async () => {
    const root = await scratch('unshare-svc');
    const sp = { queue: path.join(root, 'queue'), done: path.join(root, 'done'), failed: path.join(root, 'failed') };
    await mkdir(sp.queue, { recursive: true });
    await writeFile(path.join(root, 'config.json'), '{}');
    const ok = await makeJob(root, 'ok', 'mkdir -p /job/output\necho built > /job/output/artifact\necho done-here');
    const bad = await makeJob(root, 'bad', 'echo failing\nexit 9');
    for (const [f, as] of [[ok, 'ok.img'], [bad, 'bad.img']] as const) {
      await copyFile(f, path.join(sp.queue, `.${as}.part`));
      await rename(path.join(sp.queue, `.${as}.part`), path.join(sp.queue, as));
    }
    const r = await jobrunner(['--queue', sp.queue, '--done', sp.done, '--failed', sp.failed, '--settle', '300ms', '--once', ...U,
      '--concurrency', '2', '--timeout', '2m'], { env: { JOBRUNNER_CONFIG: path.join(root, 'config.json') } });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const st = JSON.parse(await readFile(path.join(sp.done, 'ok.json'), 'utf8')) as JobStatus;
    expect(st).toMatchObject({ status: 'succeeded', exitCode: 0, accel: 'unshare' });
    expect(st.output?.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(await readFile(path.join(sp.done, 'ok.log'), 'utf8')).toContain('done-here');
    const out = path.join(root, 'ok.out');
    expect((await extract(path.join(sp.done, 'ok.img.xz'), out)).code).toBe(0);
    expect(await readFile(path.join(out, 'output', 'artifact'), 'utf8')).toBe('built\n');
    const fst = JSON.parse(await readFile(path.join(sp.failed, 'bad.json'), 'utf8')) as JobStatus;
    expect(fst).toMatchObject({ status: 'failed', exitCode: 9, accel: 'unshare' });
    expect(existsSync(path.join(sp.failed, 'bad.img.xz'))).toBe(true);
  });
});
