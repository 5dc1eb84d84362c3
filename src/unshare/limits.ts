// Resource limits of one sandbox. cgroups v1 here (hybrid, no systemd): a directory of our own per
// job under the memory, pids and cpu hierarchies, nested in the cgroup we run in, so whatever
// limits the host put on us still apply above. Where a hierarchy is missing or not writable we fall
// back to rlimits (RLIMIT_AS per process, RLIMIT_NPROC per uid: weaker) and say so in a note. A
// group of the run's name that exists already is an error, never a fallback: the run would go
// without its limits (or share another run's group).
import { mkdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { JrError } from '../errors.js';

const ROOT = '/sys/fs/cgroup';

export interface LimitRequest { memory: number; cpus: number; pids: number }

export interface Limits {
  /** cgroup.procs files the sandbox's first process must join (before it starts anything). */
  procsFiles: string[];
  /** prlimit(1) options for what no cgroup covers. */
  rlimits: string[];
  /** One line per fallback taken, for the log. */
  notes: string[];
  /** OOM kills inside the memory cgroup so far (null without one). */
  oomKills(): Promise<number | null>;
  /**
   * SIGKILL every process left in the job's cgroups (frozen first when the freezer is there, so
   * nothing forks past us) and wait until they are empty; returns how many remain (0 normally).
   */
  killAll(): Promise<number>;
  /** Remove the cgroup directories (after killAll). */
  cleanup(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Pids listed in a cgroup directory's cgroup.procs (none when it is gone). */
export async function groupPids(dir: string): Promise<number[]> {
  const t = await readFile(path.join(dir, 'cgroup.procs'), 'utf8').catch(() => '');
  return t.split('\n').filter((l) => /^\d+$/.test(l)).map(Number);
}

/**
 * Kill everything in the cgroup directories `dirs` (one job's), `freezer` among them or null:
 * freeze, SIGKILL each listed pid, thaw (a frozen process dies only once thawed), repeat until
 * every group is empty or `ms` passed. Returns the pids still listed at the end.
 */
export async function killGroups(dirs: string[], freezer: string | null, ms = 10_000): Promise<number[]> {
  const until = Date.now() + ms;
  for (;;) {
    const left = [...new Set((await Promise.all(dirs.map(groupPids))).flat())];
    if (left.length === 0 || Date.now() > until) return left;
    if (freezer) {
      await writeFile(path.join(freezer, 'freezer.state'), 'FROZEN').catch(() => undefined);
      for (let i = 0; i < 20 && (await readFile(path.join(freezer, 'freezer.state'), 'utf8').catch(() => '')).trim() === 'FREEZING'; i++) await sleep(50);
    }
    const now = [...new Set((await Promise.all(dirs.map(groupPids))).flat())];
    for (const pid of now) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
    if (freezer) await writeFile(path.join(freezer, 'freezer.state'), 'THAWED').catch(() => undefined);
    await sleep(100);
  }
}

/** Our own cgroup path in the v1 hierarchy holding `controller` ("/" when none is listed). */
async function ownPath(controller: string): Promise<string> {
  const text = await readFile('/proc/self/cgroup', 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const [, list, p] = line.split(':');
    if (list?.split(',').includes(controller)) return p || '/';
  }
  return '/';
}

async function makeGroup(root: string, controller: string, name: string, settings: Array<[string, string]>): Promise<string> {
  const dir = path.join(root, controller, await ownPath(controller), name);
  await mkdir(dir);
  try {
    for (const [file, value] of settings) await writeFile(path.join(dir, file), value);
  } catch (e) {
    await rmdir(dir).catch(() => undefined);
    throw e;
  }
  return dir;
}

/**
 * mkdir's errors that mean "this hierarchy is not there for us" (not mounted, our own group gone,
 * not writable): the run falls back to rlimits. Any other (EEXIST above all) fails the run.
 */
const UNAVAILABLE = new Set(['ENOENT', 'ENOTDIR', 'EACCES', 'EPERM', 'EROFS']);

/**
 * Create the job's cgroups (or rlimit fallbacks); `id` names them (jobrunner-unshare-<id>).
 * JR_E_INTERNAL, with none of its groups left, when one of that name exists already (or another
 * error than an unavailable hierarchy stops its creation).
 */
export async function makeLimits(id: string, req: LimitRequest, root = ROOT): Promise<Limits> {
  const name = `jobrunner-unshare-${id}`;
  const dirs: string[] = [];
  const rlimits: string[] = [];
  const notes: string[] = [];
  let memDir: string | null = null;
  const attempt = async (controller: string, settings: Array<[string, string]>, fallback: () => void): Promise<string | null> => {
    try {
      const d = await makeGroup(root, controller, name, settings);
      dirs.push(d);
      return d;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if ((e as { syscall?: string }).syscall === 'mkdir' && !UNAVAILABLE.has(code ?? '')) {
        for (const d of dirs) await rmdir(d).catch(() => undefined);
        throw new JrError('JR_E_INTERNAL', code === 'EEXIST'
          ? `the ${controller} cgroup ${(e as NodeJS.ErrnoException).path} exists already (a run of the same name, or one whose processes outlived it): not running without its limits`
          : `could not make the ${controller} cgroup ${(e as NodeJS.ErrnoException).path} (${(e as Error).message}): not running without its limits`);
      }
      fallback();
      notes.push(`no ${controller} cgroup (${(e as Error).message.split('\n')[0]}): ${controller === 'memory' ? `RLIMIT_AS=${req.memory} per process instead` : controller === 'pids' ? `RLIMIT_NPROC=${req.pids} for the sandbox uid instead (shared by concurrent jobs)` : controller === 'cpu' ? 'CPU use is not capped' : 'the end of the run kills leftovers by pid namespace only'}`);
      return null;
    }
  };
  // memsw (memory+swap) exists only with swap accounting; the plain limit is what matters here.
  memDir = await attempt('memory', [['memory.limit_in_bytes', String(req.memory)]], () => rlimits.push(`--as=${req.memory}`));
  if (memDir) await writeFile(path.join(memDir, 'memory.memsw.limit_in_bytes'), String(req.memory)).catch(() => undefined);
  await attempt('pids', [['pids.max', String(req.pids)]], () => rlimits.push(`--nproc=${req.pids}`));
  await attempt('cpu', [['cpu.cfs_period_us', '100000'], ['cpu.cfs_quota_us', String(100000 * req.cpus)]], () => undefined);
  // The freezer limits nothing: it lets the end of the run stop every process before killing them.
  const freezer = await attempt('freezer', [], () => undefined);
  return {
    procsFiles: dirs.map((d) => path.join(d, 'cgroup.procs')),
    rlimits, notes,
    async oomKills() {
      if (!memDir) return null;
      const m = /oom_kill (\d+)/.exec(await readFile(path.join(memDir, 'memory.oom_control'), 'utf8').catch(() => ''));
      return m ? Number(m[1]) : null;
    },
    async killAll() {
      return (await killGroups(dirs, freezer)).length;
    },
    async cleanup() {
      for (const d of dirs) {
        // The last exiting process leaves the group a moment after we saw it end.
        for (let i = 0; i < 50; i++) {
          try { await rmdir(d); break; } catch (e) {
            if ((e as NodeJS.ErrnoException).code === 'ENOENT') break;
            await new Promise((r) => setTimeout(r, 100));
          }
        }
      }
    },
  };
}
