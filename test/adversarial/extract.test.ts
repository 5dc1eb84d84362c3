// Issue 10: hostile result images against the host-side reader (scripts/extract, run as a process
// the way an operator runs it). Each crafted image must end with a clear error (or, where allowed,
// a bounded success) in bounded time, memory and disk, with nothing outside its output directory
// changed and no process left. No qemu, no base image: runs anywhere bubblewrap does.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { chmod, lstat, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { REPO, runProc, scratch } from '../helpers.js';
import { craftAll, type Crafted } from './cases/crafted-images.js';
import { Ledger, processesHolding } from './lib/ledger.js';

const exec = promisify(execFile);
const haveBwrap = (await runProc('sh', ['-c', 'command -v bwrap && command -v prlimit && test -x /usr/bin/time'])).code === 0;

/** Bytes a directory tree really occupies on disk (allocated blocks, not apparent sizes). */
async function diskUsage(p: string): Promise<number> {
  const st = await lstat(p).catch(() => null);
  if (!st) return 0;
  let n = st.blocks * 512;
  if (st.isDirectory()) for (const e of await readdir(p)) n += await diskUsage(path.join(p, e));
  return n;
}

/** Every path under `dir` except those in `skip`, with size and mtime: what "nothing else changed" compares. */
async function snapshot(dir: string, skip: string[]): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of (await readdir(d)).sort()) {
      const p = path.join(d, e);
      if (skip.includes(p)) continue;
      const st = await lstat(p);
      out.push(`${p} ${st.size} ${st.mtimeMs} ${st.mode}`);
      if (st.isDirectory()) await walk(p);
    }
  };
  await walk(dir);
  return out;
}

interface Measured { code: number | null; stderr: string; wallMs: number; maxRssKiB: number; diskBytes: number }

describe.skipIf(!haveBwrap)('hostile result images against scripts/extract', () => {
  const ledger = new Ledger();
  let work: string;
  let hostDir: string;
  /** Where the runner stages copies the sandbox user can read (work/ itself is private, 0700). */
  let staging: string;
  let crafted: Crafted[] = [];
  const measured = new Map<string, Measured>();

  beforeAll(async () => {
    await exec(path.join(REPO, 'scripts', 'extract'), ['--help']); // builds dist/ when sources changed
    work = await scratch('adv-extract');
    staging = await mkdtemp('/var/tmp/jr-adv-staging-');
    await chmod(staging, 0o755);
    hostDir = path.join(work, 'host-dir');
    await mkdir(hostDir);
    await writeFile(path.join(hostDir, 'inside.txt'), 'a host file a symlink in an image points next to\n');
    await mkdir(path.join(work, 'images'));
    crafted = await craftAll(path.join(work, 'images'), hostDir);
    for (const c of crafted) await ledger.watchSentinel(c.image);
    await ledger.watchSentinel(path.join(hostDir, 'inside.txt'));
  }, 120_000);

  afterAll(async () => {
    await rm(staging, { recursive: true, force: true });
    const f = await ledger.figures();
    console.log(`[adversarial/extract] jobs lost: ${f.jobsLost}; host files modified: ${f.hostFilesModified}; processes left: ${f.qemuLeft}`);
    for (const [name, m] of measured) {
      console.log(`[adversarial/extract] ${name}: exit ${m.code}, ${m.wallMs} ms, max RSS ${Math.round(m.maxRssKiB / 1024)} MiB, disk ${m.diskBytes} bytes`);
    }
  });

  /** Run scripts/extract under /usr/bin/time -v (max RSS of it and its children) with TMPDIR in work/. */
  async function extract(c: Crafted): Promise<Measured> {
    const out = path.join(work, 'out', c.name);
    const tmp = path.join(work, 'tmp', c.name);
    await mkdir(tmp, { recursive: true });
    const skip = [path.join(work, 'out'), path.join(work, 'tmp')];
    const before = await snapshot(work, skip);
    const r = await runProc('/usr/bin/time', ['-v', path.join(REPO, 'scripts', 'extract'), ...c.args, c.image, out],
      { env: { TMPDIR: tmp, JOBRUNNER_CONFINE_TMPDIR: staging }, timeoutMs: 120_000 });
    const rss = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr)?.[1] ?? NaN);
    const m = { code: r.code, stderr: r.stderr.split('\n\tCommand being timed')[0]!, wallMs: r.ms, maxRssKiB: rss, diskBytes: await diskUsage(out) };
    measured.set(c.name, m);
    // Nothing outside out/ changed (the images, the host dir, TMPDIR: staging copies are gone).
    expect(await snapshot(work, skip)).toEqual(before);
    expect(await readdir(tmp)).toEqual([]);
    expect(await readdir(staging)).toEqual([]);
    ledger.recordQemuLeft(`extract ${c.name}`, await processesHolding(work));
    return m;
  }

  it('builds every crafted image', () => { expect(crafted.map((c) => c.name)).toEqual(['cycle', 'cycle-xz', 'self', 'balloon', 'balloon-allowed', 'shared', 'deep', 'long-path', 'wide', 'outside', 'dup', 'setuid']); });

  for (const name of ['cycle', 'cycle-xz', 'self', 'balloon', 'shared', 'deep', 'long-path', 'wide', 'outside', 'dup']) {
    it(`refuses ${name} with a clear error in bounded time, memory and disk`, async () => {
      const c = crafted.find((x) => x.name === name)!;
      const m = await extract(c);
      expect(m.code, m.stderr).toBe(125);
      expect(m.stderr).toMatch(c.refusal!);
      expect(m.stderr).toContain('[JR_E_INPUT]');
      expect(m.wallMs).toBeLessThan(60_000);
      expect(m.maxRssKiB).toBeLessThan(400 * 1024);
      expect(m.diskBytes).toBeLessThan(c.maxDisk ?? 4 << 20);
      expect(await readdir(hostDir)).toEqual(['inside.txt']);
    });
  }

  it('with --max-bytes 2T, writes the 1 TiB inode as a hole: its apparent size, almost no disk', async () => {
    const m = await extract(crafted.find((x) => x.name === 'balloon-allowed')!);
    expect(m.code, m.stderr).toBe(0);
    const st = await lstat(path.join(work, 'out', 'balloon-allowed', 'output', 'huge'));
    expect(st.size).toBe(1024 ** 4);
    expect(st.blocks * 512).toBeLessThan(1 << 20);
    expect(m.diskBytes).toBeLessThan(1 << 20);
  });

  it('drops setuid (and owners) from what it writes', async () => {
    const m = await extract(crafted.find((x) => x.name === 'setuid')!);
    expect(m.code, m.stderr).toBe(0);
    const st = await lstat(path.join(work, 'out', 'setuid', 'output', 'tool'));
    expect(st.mode & 0o7777).toBe(0o755);
    expect(st.uid).toBe(process.getuid!());
  });

  it('leaves the three figures at 0: jobs lost, host files modified, processes left', async () => {
    const f = await ledger.figures();
    expect(f.detail).toMatchObject({ modified: [] });
    expect([f.jobsLost, f.hostFilesModified, f.qemuLeft]).toEqual([0, 0, 0]);
  });
});
