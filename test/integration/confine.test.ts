// The confined runner for readers of untrusted images (src/image/confine.ts), checked from outside:
// the sandboxed process is found in /proc and its identity, capabilities, namespaces, limits and
// view of the filesystem are read there, not taken from the sandbox's own word.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmod, lstat, mkdir, readFile, readdir, readlink, rm, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { openConfined, type ConfinedImage } from '../../src/image/confine.js';
import { run } from '../../src/proc.js';
import { REPO, scratch } from '../helpers.js';

const isRoot = process.getuid?.() === 0;
const haveBwrap = (await run('sh', ['-c', 'command -v bwrap && command -v prlimit'], { reject: false })).exitCode === 0;

/** The pid of the process whose argv is exactly `argv`, once it shows up. */
async function findProc(argv: string[], ms = 10_000): Promise<number> {
  const want = argv.join('\0') + '\0';
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 50))) {
    for (const p of await readdir('/proc')) {
      if (/^\d+$/.test(p) && (await readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '')) === want) return Number(p);
    }
  }
  throw new Error(`no process ${argv.join(' ')}`);
}

describe.skipIf(!haveBwrap)('confined runner', () => {
  let dir: string;
  let image: string;
  let box: ConfinedImage;
  beforeAll(async () => {
    dir = await scratch('confine');
    image = path.join(dir, 'job.img');
    await writeFile(image, 'not really a filesystem\n');
    await chmod(image, 0o600); // root-only: the runner must make its own readable copy
    box = await openConfined(image);
  });
  afterAll(async () => {
    await box?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('runs the tool unprivileged, without capabilities, in its own namespaces, limited, seeing only /usr and the image', async () => {
    const tag = `${(Date.now() % 1000) + 30}.5`; // a unique argv to find it by
    const running = box.run('sleep', [tag], { limits: { timeoutMs: 1500, cpuSeconds: 7, memoryBytes: 300 << 20 } });
    const pid = await findProc(['/usr/bin/sleep', tag]);
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const field = (k: string): string => new RegExp(`^${k}:\\s*(.*)$`, 'm').exec(status)![1]!.trim();
    const want = isRoot ? Number((await run('id', ['-u', 'jobrunner-qemu'])).stdout.trim()) : process.getuid!();
    expect(field('Uid').split(/\s+/).map(Number)).toEqual([want, want, want, want]);
    expect(field('NoNewPrivs')).toBe('1');
    expect(field('CapEff')).toBe('0000000000000000');
    expect(field('CapPrm')).toBe('0000000000000000');
    for (const ns of ['user', 'pid', 'net', 'ipc', 'uts', 'mnt']) {
      expect(await readlink(`/proc/${pid}/ns/${ns}`), ns).not.toBe(await readlink(`/proc/self/ns/${ns}`));
    }
    // No network: the only interface in its namespace is loopback (down).
    const ifaces = (await readFile(`/proc/${pid}/net/dev`, 'utf8')).split('\n').slice(2).filter(Boolean).map((l) => l.split(':')[0]!.trim());
    expect(ifaces).toEqual(['lo']);
    const limits = await readFile(`/proc/${pid}/limits`, 'utf8');
    expect(limits).toMatch(/^Max cpu time\s+7\s+7\s+seconds/m);
    expect(limits).toMatch(new RegExp(`^Max address space\\s+${300 << 20}\\s+${300 << 20}\\s+bytes`, 'm'));
    expect(limits).toMatch(/^Max file size\s+16777216\s+16777216\s+bytes/m);
    expect(limits).toMatch(/^Max core file size\s+0\s+0/m);
    expect((await readdir(`/proc/${pid}/root`)).sort()).toEqual(['bin', 'dev', 'etc', 'image', 'lib', 'lib64', 'sbin', 'tmp', 'usr']);
    expect(await readdir(`/proc/${pid}/root/etc`)).toEqual(['ld.so.cache']);
    // And the wall-clock limit kills it.
    const t = Date.now();
    await expect(running).rejects.toMatchObject({ code: 'JR_E_INPUT', message: expect.stringMatching(/ran past its 2 s limit|ran past its 1 s limit/) });
    expect(Date.now() - t).toBeLessThan(5_000);
    await new Promise((r) => setTimeout(r, 200));
    await expect(readFile(`/proc/${pid}/cmdline`, 'utf8').then((c) => c.includes(tag))).rejects.toThrow();
  });

  it('reads the image but cannot write it, and cannot reach the host files', async () => {
    const r = await box.run('sh', ['-c', 'cat /image; echo x >> /image; echo "rc=$?"; cat /etc/passwd; ls /root /var /home']);
    expect(r.stdout.toString()).toContain('not really a filesystem\n');
    expect(r.stdout.toString()).toMatch(/rc=[12]/);
    expect(r.stderr).toMatch(/cannot create \/image: (Read-only file system|Permission denied)/);
    expect(r.stderr).toMatch(/passwd: No such file/);
    expect(await readFile(image, 'utf8')).toBe('not really a filesystem\n');
  });

  it('kills a tool past its stdout cap, its CPU limit or its memory limit', async () => {
    const t = Date.now();
    await expect(box.run('yes', [], { limits: { maxStdout: 1 << 20 } })).rejects.toThrow(/wrote more than 1048576 bytes of output/);
    await expect(box.run('sh', ['-c', 'while :; do :; done'], { limits: { cpuSeconds: 1, timeoutMs: 30_000 } })).rejects.toThrow(/killed by SIG(KILL|XCPU)/);
    expect(Date.now() - t).toBeLessThan(20_000);
    const m = await box.run('sh', ['-c', 'head -c 200000000 /dev/zero | tr "\\0" x | sort'], { limits: { memoryBytes: 64 << 20 } });
    expect(m.exitCode).not.toBe(0);
    expect(m.stderr).toMatch(/memory exhausted|Cannot allocate|File too large|No space left/);
  });

  it.skipIf(!isRoot)('stages a root-only sparse image as a sparse copy the sandbox can read, removed on close', async () => {
    const stage = path.join(dir, 'stage');
    await mkdir(stage);
    await chmod(dir, 0o755); // the staging root must be traversable by the sandbox user
    const sparse = path.join(dir, 'private', 'sparse.img');
    await mkdir(path.dirname(sparse), { mode: 0o700 });
    await writeFile(sparse, 'head\n');
    await truncate(sparse, 1024 ** 3);
    const saved = process.env.JOBRUNNER_CONFINE_TMPDIR;
    process.env.JOBRUNNER_CONFINE_TMPDIR = stage;
    try {
      const b = await openConfined(sparse);
      const [copyDir] = await readdir(stage);
      const copy = await lstat(path.join(stage, copyDir!, 'image'));
      expect(copy.size).toBe(1024 ** 3);
      expect(copy.blocks * 512).toBeLessThan(1 << 20);
      expect((await b.run('head', ['-c', '5', '/image'])).stdout.toString()).toBe('head\n');
      await b.close();
      expect(await readdir(stage)).toEqual([]);
    } finally {
      if (saved === undefined) delete process.env.JOBRUNNER_CONFINE_TMPDIR; else process.env.JOBRUNNER_CONFINE_TMPDIR = saved;
    }
  });

  it.skipIf(!isRoot)('as an unprivileged caller, runs as that caller', async () => {
    const script = path.join(dir, 'who.mjs');
    await writeFile(script, `import { openConfined } from ${JSON.stringify(path.join(REPO, 'dist/image/confine.js'))};\n`
      + 'const b = await openConfined(process.argv[2]); const r = await b.run("id", ["-u"]); await b.close(); process.stdout.write(r.stdout);\n');
    const pub = path.join(dir, 'public.img');
    await writeFile(pub, 'x');
    await chmod(dir, 0o755);
    const r = await run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, script, pub], { reject: false, cwd: REPO });
    expect(r.stdout.trim(), r.stderr).toBe('65534');
  });
});
