// Resource limits of one sandbox. cgroups v1 here (hybrid, no systemd): a directory of our own per
// job under the memory, pids and cpu hierarchies, nested in the cgroup we run in, so whatever
// limits the host put on us still apply above. Where a hierarchy is missing or not writable we fall
// back to rlimits (RLIMIT_AS per process, RLIMIT_NPROC per uid: weaker) and say so in a note.
import { mkdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

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
  /** Remove the cgroup directories (call once no process is left in them). */
  cleanup(): Promise<void>;
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

async function makeGroup(controller: string, name: string, settings: Array<[string, string]>): Promise<string> {
  const dir = path.join(ROOT, controller, await ownPath(controller), name);
  await mkdir(dir);
  try {
    for (const [file, value] of settings) await writeFile(path.join(dir, file), value);
  } catch (e) {
    await rmdir(dir).catch(() => undefined);
    throw e;
  }
  return dir;
}

/** Create the job's cgroups (or rlimit fallbacks); `id` names them (jobrunner-unshare-<id>). */
export async function makeLimits(id: string, req: LimitRequest): Promise<Limits> {
  const name = `jobrunner-unshare-${id}`;
  const dirs: string[] = [];
  const rlimits: string[] = [];
  const notes: string[] = [];
  let memDir: string | null = null;
  const attempt = async (controller: string, settings: Array<[string, string]>, fallback: () => void): Promise<string | null> => {
    try {
      const d = await makeGroup(controller, name, settings);
      dirs.push(d);
      return d;
    } catch (e) {
      fallback();
      notes.push(`no ${controller} cgroup (${(e as Error).message.split('\n')[0]}): ${controller === 'memory' ? `RLIMIT_AS=${req.memory} per process instead` : controller === 'pids' ? `RLIMIT_NPROC=${req.pids} for the sandbox uid instead (shared by concurrent jobs)` : 'CPU use is not capped'}`);
      return null;
    }
  };
  // memsw (memory+swap) exists only with swap accounting; the plain limit is what matters here.
  memDir = await attempt('memory', [['memory.limit_in_bytes', String(req.memory)]], () => rlimits.push(`--as=${req.memory}`));
  if (memDir) await writeFile(path.join(memDir, 'memory.memsw.limit_in_bytes'), String(req.memory)).catch(() => undefined);
  await attempt('pids', [['pids.max', String(req.pids)]], () => rlimits.push(`--nproc=${req.pids}`));
  await attempt('cpu', [['cpu.cfs_period_us', '100000'], ['cpu.cfs_quota_us', String(100000 * req.cpus)]], () => undefined);
  return {
    procsFiles: dirs.map((d) => path.join(d, 'cgroup.procs')),
    rlimits, notes,
    async oomKills() {
      if (!memDir) return null;
      const m = /oom_kill (\d+)/.exec(await readFile(path.join(memDir, 'memory.oom_control'), 'utf8').catch(() => ''));
      return m ? Number(m[1]) : null;
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
