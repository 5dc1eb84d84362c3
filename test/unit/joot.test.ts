// joot's pure parts: config validation, users, root partition choice, index locations, the lock.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseConfig } from '../../src/joot/config.js';
import { parseGroup, parsePasswd, missingUserHelp } from '../../src/joot/users.js';
import { chooseRoot } from '../../src/joot/import.js';
import { joinLocation } from '../../src/joot/fetch.js';
import { withLock } from '../../src/joot/lock.js';
import { checkName } from '../../src/joot/store.js';
import type { Partition } from '../../src/image/probe.js';

describe('parseConfig', () => {
  it('fills defaults, JOOT_HOME wins over home', () => {
    const c = parseConfig({ home: '/srv/joot' }, '/etc/joot.cfg', { JOOT_HOME: '/tmp/jh' });
    expect(c.home).toBe('/tmp/jh');
    expect(c.copyFiles).toEqual(['/etc/resolv.conf', '/etc/hosts']);
    expect(c.baseImageDirs[0]).toMatch(/base-image$/);
    expect(c.index).toBeNull();
  });
  it('explains bad values in the house style', () => {
    expect(() => parseConfig({ copyFiles: 'x' }, 'f', {})).toThrow('Expected `copyFiles` in f to be an array of strings, got "x"');
    expect(() => parseConfig({ baseImageDirs: ['rel'] }, 'f', {})).toThrow('Expected `baseImageDirs` in f to be an absolute path, got "rel"');
    expect(() => parseConfig({ colour: 1 }, 'f', {})).toThrow(/Expected keys of f to be among .*got `colour`/);
    expect(() => parseConfig([], 'f', {})).toThrow('Expected f to hold a JSON object, got an array');
  });
});

describe('users', () => {
  it('parses passwd and group', () => {
    expect(parsePasswd('root:x:0:0:root:/root:/bin/bash\nbad\n')).toEqual([{ name: 'root', uid: 0, gid: 0, home: '/root', shell: '/bin/bash' }]);
    expect(parseGroup('sudo:x:27:alice,bob\n')).toEqual([{ name: 'sudo', gid: 27, members: ['alice', 'bob'] }]);
  });
  it('tells how to add a missing user, with the host uid', () => {
    const m = missingUserHelp('dev', 'alice', { name: 'alice', uid: 1000, gid: 1000, home: '/home/alice', shell: '/bin/bash' });
    expect(m).toContain('joot enter dev --user root -- useradd -m -u 1000 -s /bin/bash alice');
  });
  it('rejects names that are not plain directory names', () => {
    for (const bad of ['..', 'a/b', '-x', '', '.hidden']) expect(() => checkName(bad)).toThrow(/Expected `NAME`/);
    expect(() => checkName('dev-1.2_x')).not.toThrow();
  });
});

describe('chooseRoot', () => {
  const p = (nr: number, fstype: string, size: number, extra: Partial<Partition> = {}): Partition =>
    ({ nr, offset: nr * 1e6, size, fstype, label: '', partType: '0x83', ...extra });
  it('prefers the GPT root type, then a root label, then the largest Linux filesystem', () => {
    expect(chooseRoot([p(1, 'ext4', 9e9), p(2, 'ext4', 1e9, { partType: '4f68bce3-e8cd-4db1-96e7-fbcaf984b709' })]).nr).toBe(2);
    expect(chooseRoot([p(1, 'ext4', 9e9), p(2, 'xfs', 1e9, { label: 'cloudimg-rootfs' })]).nr).toBe(2);
    expect(chooseRoot([p(1, 'vfat', 9e10), p(2, 'ext4', 1e9), p(3, 'ext4', 5e9), p(4, 'swap', 9e9)]).nr).toBe(3);
    expect(chooseRoot([p(1, 'ext4', 9e9), p(2, 'ext4', 1e9)], 2).nr).toBe(2);
    expect(() => chooseRoot([p(1, 'swap', 1e9)])).toThrow(/Expected a partition with a Linux filesystem/);
  });
});

describe('joinLocation', () => {
  it('resolves image files next to image.json, for URLs and paths', () => {
    expect(joinLocation('file:///srv/img/default/image.json', 'root.img')).toBe('file:///srv/img/default/root.img');
    expect(joinLocation('https://h/img/default', 'image.json')).toBe('https://h/img/default/image.json');
    expect(joinLocation('/srv/img/default/', 'image.json')).toBe('/srv/img/default/image.json');
  });
});

describe('withLock', () => {
  let dir: string;
  beforeAll(async () => { dir = await mkdtemp(path.join(os.tmpdir(), 'joot-lock-')); });
  afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

  it('serialises critical sections', async () => {
    const f = path.join(dir, 'a.lock');
    const log: string[] = [];
    const section = (n: string) => withLock(f, async () => { log.push(`in ${n}`); await new Promise((r) => setTimeout(r, 30)); log.push(`out ${n}`); });
    await Promise.all([section('1'), section('2'), section('3')]);
    for (let i = 0; i < log.length; i += 2) expect(log[i]!.slice(3)).toBe(log[i + 1]!.slice(4));
  });
  it('breaks a lock whose owner is dead', async () => {
    const f = path.join(dir, 'b.lock');
    await writeFile(f, '999999 12345\n'); // no such process
    expect(await withLock(f, async () => 'got it', 2_000)).toBe('got it');
  });
});
