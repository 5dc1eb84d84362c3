// The unshare runner's pure parts and its end-of-run kill: bwrap's namespaces and mounts, the id
// map, per-spool names, and killGroups emptying a cgroup-like procs list (real processes, a plain
// directory standing in for the cgroup: killing by the listed pids is what is under test).
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { killGroups } from '../../../src/unshare/limits.js';
import { bwrapArgs, dropTo, idMap, INSTALL_CAPS, JOIN_FAILED, sandboxArgv } from '../../../src/unshare/sandbox.js';
import { unshareJobId } from '../../../src/unshare/sweep.js';

const spec = { idBase: 700000000, root: '/r', job: '/j', tmpBytes: 1 << 20, nonce: 'n0', procsFiles: ['/cg/a/cgroup.procs'], rlimits: ['--as=1'] };
const dirP = mkdtemp(path.join(os.tmpdir(), 'unshare-unit-'));
afterAll(async () => rm(await dirP, { recursive: true, force: true }));

describe('unshare sandbox', () => {
  it('asks bwrap for every namespace, no network, a fresh /proc and /dev, and only our two filesystems', () => {
    const a = bwrapArgs(spec);
    // bwrap refuses to start a sandbox that could still make a user namespace (run.ts denies them).
    for (const f of ['--unshare-user', '--assert-userns-disabled', '--unshare-pid', '--unshare-ipc', '--unshare-net', '--unshare-uts', '--die-with-parent', '--new-session', '--clearenv']) expect(a).toContain(f);
    const binds = a.flatMap((x, i) => (x === '--bind' || x === '--ro-bind' ? [`${a[i + 1]}:${a[i + 2]}`] : []));
    expect(binds).toEqual(['/r:/', '/j:/job']);
    expect(a.slice(a.indexOf('--proc'), a.indexOf('--proc') + 4)).toEqual(['--proc', '/proc', '--dev', '/dev']);
    expect(a.slice(-2)).toEqual(['construir', 'n0']);
  });

  it('joins the cgroups before dropping to the id range with no capabilities; maps 65536 ids', () => {
    const argv = sandboxArgv(spec);
    const at = (x: string): number => argv.indexOf(x);
    expect(argv.slice(0, 2)).toEqual(['sh', '-c']);
    expect(at('/cg/a/cgroup.procs')).toBeLessThan(at('prlimit'));
    expect(at('prlimit')).toBeLessThan(at('setpriv'));
    expect(at('setpriv')).toBeLessThan(at('bwrap'));
    expect(dropTo(5)).toEqual(expect.arrayContaining(['--reuid=5', '--regid=5', '--clear-groups', '--inh-caps=-all', '--bounding-set=-all', '--no-new-privs']));
    expect(idMap(700000000)).toBe('0 700000000 65536\n');
  });

  it('a cgroup it cannot join stops it before setpriv and bwrap, with JOIN_FAILED and the group named', async () => {
    const argv = sandboxArgv({ ...spec, procsFiles: [path.join(await dirP, 'no-such-group', 'cgroup.procs')] });
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const c = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      c.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
      c.on('close', (code) => resolve({ code, stderr }));
    });
    expect(r.code).toBe(JOIN_FAILED);
    expect(r.stderr).toContain(`jobrunner: could not join the cgroup ${path.join(await dirP, 'no-such-group', 'cgroup.procs')}`);
  });

  it('a job keeps no capability; a deps install gets exactly INSTALL_CAPS, bounded by the same set', () => {
    expect(bwrapArgs(spec)).not.toContain('--cap-add');
    const a = bwrapArgs({ ...spec, caps: INSTALL_CAPS });
    const added = a.flatMap((x, i) => (x === '--cap-add' ? [a[i + 1]] : []));
    expect(added).toEqual(INSTALL_CAPS.map((c) => `CAP_${c.toUpperCase()}`));
    for (const c of ['CAP_SYS_ADMIN', 'CAP_MKNOD', 'CAP_NET_ADMIN', 'CAP_SYS_PTRACE', 'CAP_SYS_TIME', 'CAP_SYS_MODULE']) expect(added).not.toContain(c);
    // The bounding set bwrap inherits holds the same caps, so it could not grant more if asked.
    const argv = sandboxArgv({ ...spec, caps: INSTALL_CAPS });
    expect(argv).toContain(`--bounding-set=-all,${INSTALL_CAPS.map((c) => `+${c}`).join(',')}`);
    expect(sandboxArgv(spec)).toContain('--bounding-set=-all');
    // bwrap's own options come before the command it runs.
    expect(a.indexOf('--cap-add')).toBeLessThan(a.indexOf('--'));
  });

  it('names sandboxes per spool, so one spool\'s sweep never matches another\'s', () => {
    const a = unshareJobId('/spool/a/queue', 'j1');
    expect(a).toBe(unshareJobId('/spool/a/queue/', 'j1'));
    expect(a.startsWith(unshareJobId('/spool/a/queue', ''))).toBe(true);
    expect(a.startsWith(unshareJobId('/spool/b/queue', ''))).toBe(false);
  });

  it('killGroups SIGKILLs every listed process (TERM ignored) and returns once the list is empty', async () => {
    const dir = path.join(await dirP, 'group');
    await (await import('node:fs/promises')).mkdir(dir);
    const kids = [0, 1].map(() => spawn('sh', ['-c', 'trap "" TERM; sleep 60'], { stdio: 'ignore' }));
    const gone = kids.map((k) => new Promise<string | null>((r) => k.on('exit', (_c, s) => r(s))));
    // A stand-in cgroup.procs that empties itself as its processes die (the kernel's does).
    let alive = kids.length;
    kids.forEach((k) => k.on('exit', () => { alive--; writeFileSync(path.join(dir, 'cgroup.procs'), kids.filter((x) => x.exitCode === null && x.signalCode === null).map((x) => `${x.pid}\n`).join('')); }));
    await writeFile(path.join(dir, 'cgroup.procs'), kids.map((k) => `${k.pid}\n`).join(''));
    const left = await killGroups([dir], null, 5000);
    expect(await Promise.all(gone)).toEqual(['SIGKILL', 'SIGKILL']);
    expect(alive).toBe(0);
    expect(left).toEqual([]);
  });
});
