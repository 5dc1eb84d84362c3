// Real qemu, real Debian guest built by scripts/build-base-image: `jobrunner run`, mkimage, extract.
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { HAVE_BASE, REPO, jobTree, jobrunner, makeJob, runProc, scratch } from '../helpers.js';

describe.skipIf(!HAVE_BASE)('jobrunner run (real qemu)', () => {
  let work: string;
  beforeAll(async () => { work = await scratch('run'); });

  it('runs a job that writes /job/output/answer; extract returns it', async () => {
    const img = await makeJob(work, 'answer', 'mkdir -p /job/output\necho 42 > /job/output/answer\necho "running as $(id -u) in $(pwd)"\ncat /etc/debian_version');
    const r = await jobrunner(['run', img, '--timeout', '3m']);
    expect(r.stderr).toContain('the job succeeded');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('running as 0 in /job');
    expect(r.stdout).toMatch(/^12\.\d+$/m);
    const out = path.join(work, 'answer.out');
    const x = await runProc(path.join(REPO, 'scripts', 'extract'), [img, out]);
    expect(x.code, x.stderr).toBe(0);
    expect(await readFile(path.join(out, 'output', 'answer'), 'utf8')).toBe('42\n');
    // construir also keeps the job's output and exit status inside the image.
    const all = path.join(work, 'answer.all');
    expect((await runProc(path.join(REPO, 'scripts', 'extract'), [img, all, '/construir.log', '/construir.exit'])).code).toBe(0);
    expect(await readFile(path.join(all, 'construir.exit'), 'utf8')).toBe('0\n');
    expect(await readFile(path.join(all, 'construir.log'), 'utf8')).toContain('running as 0 in /job');
  });

  it('exits with the job\'s status and streams its output', async () => {
    const img = await makeJob(work, 'three', 'echo "about to fail on purpose"\nexit 3');
    const r = await jobrunner(['run', img, '--timeout', '3m']);
    expect(r.code).toBe(3);
    expect(r.stdout).toContain('about to fail on purpose');
    expect(r.stderr).toContain('the job exited with status 3');
  });

  it('kills a job past --timeout and exits 124', async () => {
    const img = await makeJob(work, 'sleepy', 'echo sleeping\nsleep 600');
    const r = await jobrunner(['run', img, '--timeout', '25s']);
    expect(r.code).toBe(124);
    expect(r.stderr).toMatch(/ran past its 25s limit/);
    expect(r.ms).toBeLessThan(25_000 + 15_000);
  });

  it('reports 127 when the image has no usable bin/construir', async () => {
    const tree = await jobTree(path.join(work, 'noexec.tree'), 'echo hi');
    const img = path.join(work, 'noexec.img');
    // mkimage refuses such trees, so make the image with mke2fs directly, as a hand-made job would.
    await runProc('chmod', ['-x', path.join(tree, 'bin', 'construir')]);
    expect((await runProc('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', tree, img, '32M'], { env: { PATH: `${process.env.PATH}:/usr/sbin` } })).code).toBe(0);
    const r = await jobrunner(['run', img, '--timeout', '3m']);
    expect(r.code).toBe(127);
    expect(r.stdout).toContain('/job/bin/construir is missing or not executable');
  });

  it('refuses a junk image before booting (exit 122)', async () => {
    const img = path.join(work, 'junk.img');
    await runProc('dd', ['if=/dev/urandom', `of=${img}`, 'bs=1M', 'count=2']);
    const r = await jobrunner(['run', img]);
    expect(r.code).toBe(122);
    expect(r.stderr).toContain('no ext2/3/4 superblock');
  });

  it('boots the full systemd mode too (construir.service)', async () => {
    const img = await makeJob(work, 'systemd', 'echo "pid1 is $(cat /proc/1/comm)"\nexit 5');
    const r = await jobrunner(['run', img, '--init', 'systemd', '--timeout', '4m']);
    expect(r.stdout).toContain('pid1 is systemd');
    expect(r.code).toBe(5);
  });
});

describe('mkimage (no root, no mount)', () => {
  it('refuses a tree without bin/construir, or with a non-executable one', async () => {
    const work = await scratch('mkimage');
    const empty = path.join(work, 'empty');
    await jobTree(empty, 'true');
    await runProc('rm', [path.join(empty, 'bin', 'construir')]);
    let r = await runProc(path.join(REPO, 'scripts', 'mkimage'), [empty, '-o', path.join(work, 'e.img')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('has no bin/construir');
    const noexec = await jobTree(path.join(work, 'noexec'), 'true');
    await runProc('chmod', ['-x', path.join(noexec, 'bin', 'construir')]);
    r = await runProc(path.join(REPO, 'scripts', 'mkimage'), [noexec, '-o', path.join(work, 'n.img')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('not executable');
    expect(await readdir(work)).not.toContain('n.img');
  });

  it('preserves modes, symlinks and empty dirs, from a directory or a tarball, and writes a sparse file', async () => {
    const work = await scratch('mkimage');
    const tree = await jobTree(path.join(work, 'tree'), 'true', { 'data/file.txt': 'content\n' });
    await runProc('mkdir', ['-p', path.join(tree, 'empty-dir')]);
    await runProc('ln', ['-s', 'data/file.txt', path.join(tree, 'link')]);
    await runProc('chmod', ['640', path.join(tree, 'data', 'file.txt')]);
    await runProc('tar', ['-C', tree, '-cJf', path.join(work, 'tree.tar.xz'), '.']);
    for (const src of [tree, path.join(work, 'tree.tar.xz')]) {
      const img = path.join(work, `${path.basename(src)}.img`);
      const r = await runProc(path.join(REPO, 'scripts', 'mkimage'), [src, '-o', img]);
      expect(r.code, r.stderr).toBe(0);
      const ls = await runProc('debugfs', ['-R', 'ls -l /', img], { env: { PATH: `${process.env.PATH}:/usr/sbin` } });
      expect(ls.stdout).toMatch(/120777.*link/);
      expect(ls.stdout).toMatch(/40755.*empty-dir/);
      const st = await runProc('debugfs', ['-R', 'stat /data/file.txt', img], { env: { PATH: `${process.env.PATH}:/usr/sbin` } });
      expect(st.stdout).toMatch(/Mode:\s+0640/);
      const du = await runProc('du', ['-k', img]);
      expect(Number(du.stdout.split('\t')[0])).toBeLessThan(4096); // 1 GiB apparent, a few MiB on disk
    }
    const again = await runProc(path.join(REPO, 'scripts', 'mkimage'), [tree, '-o', path.join(work, 'tree.img')]);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('already exists');
  });
});
