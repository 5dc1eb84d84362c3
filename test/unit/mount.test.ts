// Pure and filesystem-only parts of src/image: mountinfo parsing, qemu-storage-daemon arguments,
// partx parsing, and resolving paths inside a root without escaping it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdir, mkdtemp, rm, symlink, writeFile, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseMountinfo } from '../../src/image/mountinfo.js';
import { qsdArgs } from '../../src/image/qsd.js';
import { parsePartx } from '../../src/image/probe.js';
import { copyHostFile, resolveInside } from '../../src/image/chroot.js';

describe('parseMountinfo', () => {
  it('reads mount point, type and source, undoing octal escapes', () => {
    const t = '36 35 98:0 / /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n' +
      '37 35 0:5 / /proc rw - proc proc rw\n';
    expect(parseMountinfo(t)).toEqual([
      { id: 36, parent: 35, mountpoint: '/mnt/with space', options: 'rw,noatime', fstype: 'ext3', source: '/dev/root' },
      { id: 37, parent: 35, mountpoint: '/proc', options: 'rw', fstype: 'proc', source: 'proc' },
    ]);
  });
});

describe('qsdArgs', () => {
  it('passes paths inside JSON, so commas cannot inject options', () => {
    const a = qsdArgs({ image: '/x/a,file=evil.qcow2', format: 'qcow2', exportFile: '/x/e,1.raw', pidFile: '/x/p', writable: false });
    const blockdev = JSON.parse(a[a.indexOf('--blockdev') + 1]!);
    const exp = JSON.parse(a[a.indexOf('--export') + 1]!);
    expect(blockdev).toMatchObject({ driver: 'qcow2', 'read-only': true, file: { driver: 'file', filename: '/x/a,file=evil.qcow2' } });
    expect(exp).toMatchObject({ type: 'fuse', mountpoint: '/x/e,1.raw', writable: false, 'node-name': blockdev['node-name'] });
    expect(a).toContain('--daemonize');
  });
});

describe('parsePartx', () => {
  it('turns sectors into byte offsets', () => {
    expect(parsePartx('NR START SIZE TYPE\n 1 2048 20971520 0x83\n 2 43008 82836992 0x83\n')).toEqual([
      { nr: 1, offset: 2048 * 512, size: 20971520, partType: '0x83' },
      { nr: 2, offset: 43008 * 512, size: 82836992, partType: '0x83' },
    ]);
  });
});

describe('resolveInside', () => {
  let root: string;
  let outside: string;
  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'resolve-root-'));
    outside = await mkdtemp(path.join(os.tmpdir(), 'resolve-outside-'));
    await mkdir(path.join(root, 'usr/bin'), { recursive: true });
    await mkdir(path.join(root, 'etc'), { recursive: true });
    await symlink('usr/bin', path.join(root, 'bin'));                 // merged /usr, relative
    await symlink('/etc', path.join(root, 'home'));                   // absolute: means the root's /etc
    await symlink('../../../../../..', path.join(root, 'up'));        // tries to climb out
    await symlink(path.join(outside, 'victim'), path.join(root, 'etc/resolv.conf')); // planted
    await writeFile(path.join(outside, 'victim'), 'host file\n');
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
    await rm(outside, { recursive: true, force: true });
  });

  it('follows symlinks relative to the root', async () => {
    expect(await resolveInside(root, '/bin/sh')).toBe(path.join(root, 'usr/bin/sh'));
    expect(await resolveInside(root, '/home/user')).toBe(path.join(root, 'etc/user'));
  });
  it('never climbs above the root', async () => {
    expect(await resolveInside(root, '/up/etc/passwd')).toBe(path.join(root, 'etc/passwd'));
    expect(await resolveInside(root, '/../../etc')).toBe(path.join(root, 'etc'));
  });
  it('copyHostFile replaces a planted symlink instead of writing through it', async () => {
    const src = path.join(outside, 'resolv.conf');
    await writeFile(src, 'nameserver 192.0.2.1\n');
    await copyHostFile(root, src); // copied to the same path inside: <root><outside>/resolv.conf
    expect(await readFile(path.join(root, src), 'utf8')).toBe('nameserver 192.0.2.1\n');
    // Now the planted /etc/resolv.conf -> host file: copy a host file over it.
    const hostFile = path.join(outside, 'etc-resolv');
    await writeFile(hostFile, 'new\n');
    await mkdir(path.join(root, path.dirname(hostFile)), { recursive: true });
    await symlink(path.join(outside, 'victim'), path.join(root, hostFile));
    await copyHostFile(root, hostFile);
    expect(await readFile(path.join(outside, 'victim'), 'utf8')).toBe('host file\n');
    expect(await readFile(path.join(root, hostFile), 'utf8')).toBe('new\n');
  });
});
