// A real Slurm cluster on loopback for tests: munged, slurmctld and one slurmd per node (Debian's
// Slurm supports several slurmd on one host), all from a generated slurm.conf in a temp dir
// (SLURM_CONF), started by us (PID 1 is not systemd here) and stopped by pid. Nothing in /etc is
// read or written but the munge user's existence.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync, openSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runProc, waitFor } from './helpers.js';

const readdirSafe = (d: string): Promise<string[]> => readdir(d).catch(() => []);

export const HAVE_SLURM = ['/usr/sbin/slurmctld', '/usr/sbin/slurmd', '/usr/sbin/munged', '/usr/bin/sbatch'].every((f) => existsSync(f)) && process.getuid?.() === 0;
if (!HAVE_SLURM && process.env.CI) throw new Error('CI: Slurm (slurmctld, slurmd, munge, slurm-client) is missing; scripts/setup installs it');

export interface ClusterOptions {
  nodes?: string[];
  cpusPerNode?: number;
  /** proctrack/linuxproc (default) or proctrack/cgroup; `cgroupConf: false` leaves cgroup.conf out (a broken node). */
  proctrack?: 'linuxproc' | 'cgroup';
  cgroupConf?: boolean;
  /** Seconds before slurmctld declares a silent slurmd DOWN (its jobs NODE_FAIL). */
  slurmdTimeout?: number;
}

export interface Cluster {
  dir: string;
  conf: string;
  env: Record<string, string>;
  nodes: string[];
  /** SIGKILL one node's slurmd and every job step process it started. */
  killNode(name: string): Promise<void>;
  /** Start a killed node's slurmd again and wait until it is idle. */
  restartNode(name: string): Promise<void>;
  stop(): Promise<void>;
}

const uid = async (user: string): Promise<{ uid: number; gid: number }> => {
  const u = await runProc('id', ['-u', user]); const g = await runProc('id', ['-g', user]);
  return { uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()) };
};

function start(file: string, args: string[], env: NodeJS.ProcessEnv, log: string): ChildProcess {
  const out = openSync(log, 'a');
  return spawn(file, args, { env, stdio: ['ignore', out, out] });
}

/** Start munged, slurmctld and the slurmds; resolves once every node is idle. */
export async function startCluster(o: ClusterOptions = {}): Promise<Cluster> {
  const nodes = o.nodes ?? ['n1', 'n2'];
  const dir = await mkdtemp(path.join(os.tmpdir(), 'jr-slurm-'));
  await chmod(dir, 0o755);
  const munge = await uid('munge');
  const md = { etc: path.join(dir, 'munge-etc'), run: path.join(dir, 'munge-run'), lib: path.join(dir, 'munge-lib') };
  for (const [k, d] of Object.entries(md)) { await mkdir(d); await chown(d, munge.uid, munge.gid); await chmod(d, k === 'run' ? 0o755 : 0o700); }
  const key = path.join(md.etc, 'munge.key');
  await writeFile(key, randomBytes(1024), { mode: 0o400 });
  await chown(key, munge.uid, munge.gid);
  const socket = path.join(md.run, 'munge.socket');
  const procs: ChildProcess[] = [];
  const byNode = new Map<string, ChildProcess>();
  const base = 20000 + Math.floor(Math.random() * 20000);
  const cgroup = o.proctrack === 'cgroup';
  for (const d of ['state', 'spool', 'log']) await mkdir(path.join(dir, d));
  const conf = path.join(dir, 'slurm.conf');
  await writeFile(conf, [
    'ClusterName=jrtest', `SlurmctldHost=${os.hostname()}(127.0.0.1)`, 'SlurmUser=root', 'SlurmdUser=root',
    `SlurmctldPort=${base}`, 'AuthType=auth/munge', `AuthInfo=socket=${socket}`, 'CredType=cred/munge',
    `StateSaveLocation=${dir}/state`, `SlurmdSpoolDir=${dir}/spool/%n`, `SlurmctldPidFile=${dir}/slurmctld.pid`,
    `SlurmdPidFile=${dir}/slurmd-%n.pid`, `SlurmctldLogFile=${dir}/log/slurmctld.log`, `SlurmdLogFile=${dir}/log/slurmd-%n.log`,
    `ProctrackType=proctrack/${cgroup ? 'cgroup' : 'linuxproc'}`, `TaskPlugin=${cgroup ? 'task/cgroup' : 'task/none'}`,
    'JobAcctGatherType=jobacct_gather/none', 'AccountingStorageType=accounting_storage/none',
    'SchedulerType=sched/backfill', 'SchedulerParameters=batch_sched_delay=0', 'SelectType=select/cons_tres',
    'SelectTypeParameters=CR_Core_Memory', 'DefMemPerCPU=256', 'ReturnToService=2', 'MinJobAge=3600', 'JobRequeue=0',
    `SlurmdTimeout=${o.slurmdTimeout ?? 300}`, 'KillWait=10', 'MpiDefault=none', 'SwitchType=switch/none',
    ...nodes.map((n, i) => `NodeName=${n} NodeHostname=localhost NodeAddr=127.0.0.1 Port=${base + 1 + i} CPUs=${o.cpusPerNode ?? 2} RealMemory=8192 State=UNKNOWN`),
    `PartitionName=debug Nodes=${nodes.join(',')} Default=YES MaxTime=INFINITE State=UP`, '',
  ].join('\n'));
  if (cgroup && o.cgroupConf !== false) {
    await writeFile(path.join(dir, 'cgroup.conf'), 'CgroupPlugin=cgroup/v1\nCgroupMountpoint=/sys/fs/cgroup\nCgroupAutomount=no\nConstrainCores=yes\nConstrainRAMSpace=yes\n');
  }
  const env = { ...process.env, SLURM_CONF: conf };
  const startNode = (n: string): void => {
    const p = start('/usr/sbin/slurmd', ['-D', '-N', n], env, path.join(dir, 'log', `${n}.out`));
    procs.push(p); byNode.set(n, p);
  };
  const waitIdle = async (want: string[]): Promise<void> => {
    await waitFor(`nodes ${want.join(',')} idle`, async () => {
      const r = await runProc('sinfo', ['-h', '-N', '-o', '%N %t'], { env });
      const states = new Map(r.stdout.trim().split('\n').filter(Boolean).map((l) => l.split(/\s+/) as [string, string]));
      return want.every((n) => states.get(n) === 'idle');
    }, 90_000);
  };
  const stop = async (): Promise<void> => {
    for (const p of procs.reverse()) { try { p.kill('SIGTERM'); } catch { /* gone */ } }
    await new Promise((r) => setTimeout(r, 1500));
    for (const p of procs) { try { if (p.exitCode === null) p.kill('SIGKILL'); } catch { /* gone */ } }
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  };
  try {
    procs.push(start('setpriv', [`--reuid=${munge.uid}`, `--regid=${munge.gid}`, '--clear-groups', '/usr/sbin/munged', '-F',
      `--socket=${socket}`, `--key-file=${key}`, `--pid-file=${md.run}/munged.pid`, `--log-file=${md.lib}/munged.log`, `--seed-file=${md.lib}/seed`],
    env, path.join(dir, 'log', 'munged.out')));
    await waitFor('munged', async () => existsSync(socket), 10_000);
    procs.push(start('/usr/sbin/slurmctld', ['-D', '-i'], env, path.join(dir, 'log', 'slurmctld.out')));
    await waitFor('slurmctld', async () => (await runProc('scontrol', ['ping'], { env })).stdout.includes('UP'), 30_000);
    for (const n of nodes) startNode(n);
    await waitIdle(nodes);
  } catch (e) {
    const logs = await readFile(path.join(dir, 'log', 'slurmctld.out'), 'utf8').catch(() => '');
    await stop();
    throw new Error(`${(e as Error).message}\nslurmctld said:\n${logs.slice(-2000)}`, { cause: e });
  }
  return {
    dir, conf, env: { SLURM_CONF: conf }, nodes,
    async killNode(name: string): Promise<void> {
      const p = byNode.get(name);
      if (!p?.pid) throw new Error(`no slurmd for ${name}`);
      p.kill('SIGKILL');
      // The job's processes outlive slurmd (slurmstepd is not its child once started); they are
      // the ones whose environment names this node. Kill them, and the slurmstepd above them.
      for (const pid of (await readdirSafe('/proc')).filter((x) => /^\d+$/.test(x)).map(Number)) {
        const env0 = await readFile(`/proc/${pid}/environ`, 'utf8').catch(() => '');
        if (!env0.split('\0').includes(`SLURMD_NODENAME=${name}`)) continue;
        const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        const parent = await readFile(`/proc/${ppid}/cmdline`, 'utf8').catch(() => '');
        if (parent.startsWith('slurmstepd')) await killTree(ppid); else await killTree(pid);
      }
    },
    async restartNode(name: string): Promise<void> {
      startNode(name);
      await waitIdle([name]);
    },
    stop,
  };
}

/** SIGKILL a process and all its descendants. */
async function killTree(pid: number): Promise<void> {
  const kids = (await runProc('pgrep', ['-P', String(pid)])).stdout.trim().split('\n').filter(Boolean).map(Number);
  try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  for (const k of kids) await killTree(k);
}
