// scripts/build-base-image's package list (issue 11): --packages replaces the default list,
// --extra-packages adds to it (default or replaced, repeatable), repeats and empty items drop,
// a bad name is refused. --print-packages prints the list without building anything.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO, runProc } from '../helpers.js';

const script = path.join(REPO, 'scripts', 'build-base-image');
const ALWAYS = ['linux-image-amd64', 'systemd-sysv', 'udev', 'e2fsprogs', 'util-linux', 'iproute2', 'busybox-static', 'ca-certificates', 'procps'];
const list = async (...args: string[]): Promise<string[]> => {
  const r = await runProc(script, [...args, '--print-packages']);
  if (r.code !== 0) throw new Error(r.stderr);
  return r.stdout.trim().split('\n').filter(Boolean);
};

describe('build-base-image --packages / --extra-packages', () => {
  it('defaults to build-essential on top of what is always there', async () => {
    expect(await list()).toEqual([...ALWAYS, 'build-essential']);
  });
  it('--extra-packages adds to the default list', async () => {
    expect(await list('--extra-packages', 'dwz,gawk')).toEqual([...ALWAYS, 'build-essential', 'dwz', 'gawk']);
  });
  it('--packages replaces it; --extra-packages adds whatever the order; repeats drop', async () => {
    expect(await list('--extra-packages', 'dwz', '--packages', 'git,,git', '--extra-packages', 'gawk,dwz')).toEqual([...ALWAYS, 'git', 'dwz', 'gawk']);
    expect(await list('--packages', '')).toEqual(ALWAYS);
    expect(await list('--packages', '', '--extra-packages', 'dwz')).toEqual([...ALWAYS, 'dwz']);
  });
  it('refuses a name that is not a Debian package name', async () => {
    const r = await runProc(script, ['--extra-packages', 'a;touch /tmp/x', '--print-packages']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/Expected --extra-packages to be a comma-separated list of Debian package names/);
  });
  it('documents both in --help', async () => {
    const r = await runProc(script, ['--help']);
    expect(r.stdout).toMatch(/--packages A,B,C\s+the packages beyond the always-present ones, replacing/);
    expect(r.stdout).toMatch(/--extra-packages A,B\s+packages added to that list/);
  });
});
