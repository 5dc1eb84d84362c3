// joot end to end through scripts/joot, against the real default base image (base-image/default):
// create, enter, system mounts, resolv.conf, persistence, base untouched, sharing between concurrent
// enters, crash recovery, mount/umount, rename, delete leaving nothing, vmdk/AMI-style imports, index.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { run, spawn } from '../../src/proc.js';
import { digestFile } from '../../src/image/meta.js';
import { parseMountinfo } from '../../src/image/mountinfo.js';
import { loadBaseImage } from '../../src/image/base.js';
import { busyboxTree, fsImage, leftovers, NOTHING, partitionedImage } from '../integration/mount-fixtures.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const WRAPPER = path.join(REPO, 'scripts/joot');
const CLI = path.join(REPO, 'dist/cli/joot.js');
const BASE = path.join(REPO, 'base-image/default');
const haveBase = await stat(path.join(BASE, 'root.img')).then(() => true, () => false);
const isRoot = process.getuid?.() === 0;
if (!haveBase) console.warn(`SKIPPED joot e2e: no base image at ${BASE} (build it with scripts/build-base-image)`);

let home: string;
let env: Record<string, string>;
// The wrapper is used once (it builds dist/ when needed); then the compiled CLI directly, so that
// someone else editing src/ meanwhile does not trigger rebuilds in the middle of the suite.
const joot = (args: string[], extra: Record<string, string> = {}) =>
  run(process.execPath, [CLI, ...args], { reject: false, env: { ...env, ...extra }, timeoutMs: 120_000 });
const state = async (name: string) => JSON.parse(await readFile(path.join(home, 'home/envs', name, 'mount.json'), 'utf8').catch(() => 'null'));
async function until(cond: () => Promise<boolean>, ms = 20_000): Promise<void> {
  for (const end = Date.now() + ms; !(await cond());) {
    if (Date.now() > end) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.skipIf(!haveBase || !isRoot)('joot against base-image/default', () => {
  let baseBefore: { sha256: string; bytes: number };
  let scratch: string;
  beforeAll(async () => {
    home = await mkdtemp('/var/tmp/joot-e2e-');
    scratch = path.join(home, 'scratch');
    await mkdir(path.join(home, 'imported'), { recursive: true });
    await mkdir(scratch, { recursive: true });
    const cfg = path.join(home, 'joot.cfg');
    await writeFile(cfg, JSON.stringify({ baseImageDirs: [path.join(REPO, 'base-image'), path.join(home, 'imported')], importDir: path.join(home, 'imported'), index: pathToFileURL(path.join(home, 'index.json')).href }));
    await writeFile(path.join(home, 'index.json'), '[]');
    env = { JOOT_HOME: path.join(home, 'home'), JOOT_CONFIG: cfg };
    baseBefore = await digestFile(path.join(BASE, 'root.img'));
    const r = await run(WRAPPER, ['help'], { reject: false, env }); // builds dist/ if needed
    expect(r.exitCode, r.stderr).toBe(0);
  });
  afterAll(async () => {
    for (const n of ['e1', 'e2', 'crash', 'vm', 'ami', 'idx']) await joot(['delete', n]);
    expect(await leftovers(home)).toEqual(NOTHING);
    await rm(home, { recursive: true, force: true });
  });

  it('creates an environment, refuses the same name twice, lists it', async () => {
    const c = await joot(['create', 'e1']);
    expect(c.exitCode, c.stderr).toBe(0);
    expect((await joot(['create', 'e1'])).stderr).toContain('already exists');
    const l = await joot(['list']);
    expect(l.stdout).toMatch(/^NAME\s+CREATOR\s+CREATED\s+IMAGE\n/);
    expect(l.stdout).toMatch(/\ne1\s+root\s+\d{4}-\d\d-\d\dT\S+\s+default\n/);
    const rec = JSON.parse(await readFile(path.join(home, 'home/envs/e1/env.json'), 'utf8'));
    expect(rec.imageSha256).toBe(baseBefore.sha256);
  });

  it('enter -- cat /etc/debian_version prints 12.x, with /proc, /sys, /dev/pts mounted inside', async () => {
    const r = await joot(['enter', 'e1', '--', 'cat', '/etc/debian_version']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^12\.\d+\n$/);
    const m = parseMountinfo((await joot(['enter', 'e1', '--', 'cat', '/proc/self/mountinfo'])).stdout);
    const at = (p: string) => m.find((x) => x.mountpoint === p)?.fstype;
    expect([at('/proc'), at('/sys'), at('/dev/pts')]).toEqual(['proc', 'sysfs', 'devpts']);
    expect((await joot(['enter', 'e1', '--', 'sh', '-c', 'test -d /proc/1 && echo ok'])).stdout).toBe('ok\n');
  });

  it('copies resolv.conf and hosts from the host, cleans the environment, sets JOOT_NAME', async () => {
    const r = await joot(['enter', 'e1', '--', 'cat', '/etc/resolv.conf']);
    expect(r.stdout).toBe(await readFile('/etc/resolv.conf', 'utf8'));
    expect((await joot(['enter', 'e1', '--', 'cat', '/etc/hosts'])).stdout).toBe(await readFile('/etc/hosts', 'utf8'));
    const e = (await joot(['enter', 'e1', '--no-home', '--', 'env'], { LEAKY_SECRET: 'x' })).stdout;
    expect(e).toContain('JOOT_NAME=e1\n');
    expect(e).toContain('HOME=/root\n');
    expect(e).not.toContain('LEAKY_SECRET');
  });

  it('returns the exit code of the command; a missing user says how to add it', async () => {
    expect((await joot(['enter', 'e1', '--', 'sh', '-c', 'exit 42'])).exitCode).toBe(42);
    const u = await joot(['enter', 'e1', '--user', 'nosuchuser', '--', 'true']);
    expect(u.exitCode).toBe(1);
    expect(u.stderr).toContain('useradd -m -s /bin/bash nosuchuser');
    const n = await joot(['enter', 'e1', '--user', 'nobody', '--', 'id', '-un']);
    expect(n.stdout).toBe('nobody\n');
  });

  it('keeps writes across enters, unmounting in between', async () => {
    expect((await joot(['enter', 'e1', '--', 'sh', '-c', 'echo kept > /etc/joot-persist'])).exitCode).toBe(0);
    expect((await joot(['enter', 'e1', '--', 'cat', '/etc/joot-persist'])).stdout).toBe('kept\n');
    expect(await leftovers(path.join(home, 'home'))).toEqual(NOTHING); // unmounted between enters
  });

  it('two concurrent enters share one mount; the last to leave unmounts', async () => {
    const { child: a } = await spawn(process.execPath, [CLI, 'enter', 'e1', '--', 'sleep', '4'], { env });
    await until(async () => (await state('e1'))?.holders?.length === 1);
    const { child: b } = await spawn(process.execPath, [CLI, 'enter', 'e1', '--', 'sleep', '1'], { env });
    // b records itself as a holder of the disk, then of each automount (two writes under the
    // env's lock): wait for the second, or the /proc check below races b's set-up.
    const procHolders = (st: { items?: Array<{ target: string; holders: unknown[] }> } | null): number =>
      st?.items?.find((i) => i.target === '/proc')?.holders.length ?? 0;
    await until(async () => { const st = await state('e1'); return st?.holders?.length === 2 && procHolders(st) === 2; });
    const s = await state('e1');
    const qsd = (await leftovers(path.join(home, 'home/envs/e1'))).procs.filter((p) => p.includes('qemu-storage-daemon'));
    expect(qsd).toHaveLength(1);
    expect(s.items.find((i: { target: string }) => i.target === '/proc').holders).toHaveLength(2);
    expect((await b).exitCode).toBe(0);
    expect((await leftovers(path.join(home, 'home'))).mounts.length).toBeGreaterThan(0); // a is still inside
    expect((await state('e1')).holders).toHaveLength(1);
    expect((await a).exitCode).toBe(0);
    expect(await leftovers(path.join(home, 'home'))).toEqual(NOTHING);
  });

  it('recovers from an enter killed with SIGKILL', async () => {
    expect((await joot(['create', 'crash'])).exitCode).toBe(0);
    const { child: c } = await spawn(process.execPath, [CLI, 'enter', 'crash', '--', 'sleep', '60'], { env, detached: true });
    await until(async () => (await state('crash'))?.holders?.length === 1);
    process.kill(-c.pid!, 'SIGKILL'); // the whole group: joot, chroot, sleep
    await c;
    expect((await leftovers(path.join(home, 'home/envs/crash'))).mounts.length).toBeGreaterThan(0);
    const d = await joot(['delete', 'crash']);
    expect(d.exitCode, d.stderr).toBe(0);
    expect(await leftovers(path.join(home, 'home/envs/crash'))).toEqual(NOTHING);
  });

  it('mount binds host dirs (--always for later enters), umount undoes it, rename moves it', async () => {
    const shared = path.join(scratch, 'shared');
    await mkdir(shared, { recursive: true });
    await writeFile(path.join(shared, 'f'), 'from host\n');
    const m = await joot(['mount', 'e1', shared, '--always', '--read-only']);
    expect(m.exitCode, m.stderr).toBe(0);
    const root = m.stdout.trim();
    expect(await readFile(path.join(root, shared, 'f'), 'utf8')).toBe('from host\n');
    expect((await joot(['rename', 'e1', 'e2'])).stderr).toContain('is mounted');
    expect((await joot(['umount', 'e1'])).exitCode).toBe(0);
    expect(await leftovers(path.join(home, 'home'))).toEqual(NOTHING);
    const r = await joot(['enter', 'e1', '--', 'sh', '-c', `cat ${shared}/f; echo x > ${shared}/g`]);
    expect(r.stdout).toBe('from host\n'); // automount, read-only
    expect(r.exitCode).not.toBe(0);
    expect((await joot(['umount', 'e1', shared])).exitCode).toBe(0);
    expect((await joot(['rename', 'e1', 'e2'])).exitCode).toBe(0);
    expect((await joot(['list'])).stdout).toMatch(/\ne2\s/);
    expect((await joot(['enter', 'e2', '--', 'sh', '-c', `cat /etc/joot-persist; test -e ${shared}/f || echo unbound`])).stdout).toBe('kept\nunbound\n');
  });

  it('delete leaves no mount, loop device or daemon', async () => {
    const d = await joot(['delete', 'e2']);
    expect(d.exitCode, d.stderr).toBe(0);
    expect(await leftovers(path.join(home, 'home'))).toEqual(NOTHING);
    await expect(stat(path.join(home, 'home/envs/e2'))).rejects.toThrow();
  });

  it('imports a vmdk made with qemu-img convert, and enters it', async () => {
    const vmdk = path.join(scratch, 'debian.vmdk');
    await run('qemu-img', ['convert', '-O', 'vmdk', path.join(BASE, 'root.img'), vmdk]);
    const i = await joot(['import', vmdk, '--name', 'vmdeb']);
    expect(i.exitCode, i.stderr).toBe(0);
    const meta = JSON.parse(await readFile(path.join(home, 'imported/vmdeb/image.json'), 'utf8'));
    expect(meta.files['root.img'].sha256).toBe(baseBefore.sha256); // same filesystem, bit for bit
    expect(meta).toMatchObject({ suite: 'bookworm', arch: 'amd64', importedFrom: { format: 'vmdk' } });
    expect(meta.files.vmlinuz).toBeDefined();
    // jobrunner accepts it as a base image (complete: root.img, vmlinuz, initrd.img, sizes match).
    expect((await loadBaseImage(path.join(home, 'imported'), 'vmdeb')).rootSha256).toBe(baseBefore.sha256);
    expect((await joot(['create', 'vm', 'vmdeb'])).exitCode).toBe(0);
    expect((await joot(['enter', 'vm', '--', 'cat', '/etc/debian_version'])).stdout).toMatch(/^12\.\d+\n$/);
    await rm(vmdk);
  });

  it('imports an AMI-style partitioned disk (as vmdk), picking the root partition', async () => {
    const tree = await busyboxTree(path.join(scratch, 'tree'));
    const disk = await partitionedImage(path.join(scratch, 'ami.raw'), tree);
    const vmdk = path.join(scratch, 'ami.vmdk');
    await run('qemu-img', ['convert', '-O', 'vmdk', disk, vmdk]);
    const i = await joot(['import', vmdk]);
    expect(i.exitCode, i.stderr).toBe(0);
    expect(i.stderr).toContain('partition 2');
    expect((await joot(['create', 'ami', 'ami'])).exitCode).toBe(0);
    expect((await joot(['enter', 'ami', '--', 'cat', '/etc/debian_version'])).stdout).toBe('12.99-fixture\n');
  });

  it('lists index images, downloads and verifies one on create', async () => {
    const tree = await busyboxTree(path.join(scratch, 'tree-idx'));
    const srv = path.join(scratch, 'srv');
    for (const [n, corrupt] of [['tiny', false], ['broken', true]] as const) {
      await mkdir(path.join(srv, n), { recursive: true });
      const img = await fsImage(path.join(srv, n, 'root.img'), tree, 16);
      const d = await digestFile(img);
      await writeFile(path.join(srv, n, 'image.json'), JSON.stringify({ name: n, suite: 'bookworm', arch: 'amd64', files: { 'root.img': corrupt ? { ...d, sha256: '0'.repeat(64) } : d } }));
    }
    // One entry relative to the index file, one absolute file:// URL of an image.json.
    await writeFile(path.join(home, 'index.json'), JSON.stringify(['scratch/srv/tiny', pathToFileURL(path.join(srv, 'broken/image.json')).href]));
    const before = await joot(['images']);
    expect(before.stdout).toMatch(/\ntiny\s+index\s+no\s/);
    expect(before.stdout).toMatch(/\ndefault\s+local\s+yes\s/);
    const c = await joot(['create', 'idx', 'tiny']);
    expect(c.exitCode, c.stderr).toBe(0);
    expect((await joot(['images'])).stdout).toMatch(/\ntiny\s+index\s+yes\s/);
    expect((await joot(['enter', 'idx', '--', 'cat', '/etc/debian_version'])).stdout).toBe('12.99-fixture\n');
    const bad = await joot(['create', 'bad', 'broken']);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toMatch(/Expected .*root\.img to have sha256 0{64}/);
    expect((await joot(['images'])).stdout).toMatch(/\nbroken\s+index\s+no\s/);
  });

  it('the base image is unchanged after everything', async () => {
    expect(await digestFile(path.join(BASE, 'root.img'))).toEqual(baseBefore);
  });
});
