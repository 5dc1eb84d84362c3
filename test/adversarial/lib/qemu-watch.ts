// Watches the qemu processes of one spool while a service run goes on: who they run as, their
// seccomp/no_new_privs/capability state, their argv, every file they hold open for writing, and
// their peak memory. Also watches that no job image is ever mounted or loop-attached on the host.
import { readdir, readFile, readlink } from 'node:fs/promises';
import path from 'node:path';

export interface QemuSample {
  pid: number;
  argv: string[];
  uids: number[];
  gids: number[];
  groups: string;
  noNewPrivs: string;
  seccomp: string;
  capEff: string;
  capBnd: string;
  /** Regular files open for writing (fd target paths). */
  writable: string[];
  /** Peak resident set size seen, in bytes. */
  peakRss: number;
}

const field = (status: string, name: string): string => new RegExp(`^${name}:[ \\t]*(.*)$`, 'm').exec(status)?.[1]?.trim() ?? '';

async function fdsOf(pid: number): Promise<Array<{ target: string; flags: number }>> {
  const out: Array<{ target: string; flags: number }> = [];
  for (const fd of await readdir(`/proc/${pid}/fd`).catch(() => [] as string[])) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    const info = await readFile(`/proc/${pid}/fdinfo/${fd}`, 'utf8').catch(() => '');
    const flags = /^flags:\s+([0-7]+)/m.exec(info);
    if (target && flags) out.push({ target, flags: parseInt(flags[1]!, 8) });
  }
  return out;
}

/** Sample every 300 ms until `stop()`; `samples` holds one merged record per qemu pid. */
export class QemuWatch {
  readonly samples = new Map<number, QemuSample>();
  /** Mounts or loop devices that reference the spool (must stay empty). */
  readonly hostMounts = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private busy = false;

  constructor(private readonly spoolRoot: string) {}

  start(): void {
    this.timer = setInterval(() => { if (!this.busy) { this.busy = true; void this.tick().finally(() => { this.busy = false; }); } }, 300);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    while (this.busy) await new Promise((r) => setTimeout(r, 50));
    await this.tick();
  }

  private async tick(): Promise<void> {
    const prefix = this.spoolRoot + '/';
    for (const p of await readdir('/proc').catch(() => [] as string[])) {
      if (!/^\d+$/.test(p)) continue;
      const pid = Number(p);
      const argv = (await readFile(`/proc/${pid}/cmdline`).catch(() => Buffer.alloc(0))).toString('utf8').split('\0').filter(Boolean);
      if (!/qemu-system/.test(path.basename(argv[0] ?? ''))) continue;
      const fds = await fdsOf(pid);
      if (!fds.some((f) => f.target.startsWith(prefix))) continue;
      const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
      if (!status) continue;
      const rss = Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) * 1024;
      const writable = fds.filter((f) => (f.flags & 3) !== 0 && f.target.startsWith('/')).map((f) => f.target);
      const prev = this.samples.get(pid);
      this.samples.set(pid, {
        pid, argv,
        uids: field(status, 'Uid').split(/\s+/).map(Number), gids: field(status, 'Gid').split(/\s+/).map(Number),
        groups: field(status, 'Groups'), noNewPrivs: field(status, 'NoNewPrivs'), seccomp: field(status, 'Seccomp'),
        capEff: field(status, 'CapEff'), capBnd: field(status, 'CapBnd'),
        writable: [...new Set([...(prev?.writable ?? []), ...writable])],
        peakRss: Math.max(prev?.peakRss ?? 0, rss),
      });
    }
    const mountinfo = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
    for (const line of mountinfo.split('\n')) if (line.includes(this.spoolRoot)) this.hostMounts.add(`mount: ${line}`);
    for (const dev of await readdir('/sys/block').catch(() => [] as string[])) {
      if (!dev.startsWith('loop')) continue;
      const backing = await readFile(`/sys/block/${dev}/loop/backing_file`, 'utf8').catch(() => '');
      if (backing.includes(this.spoolRoot)) this.hostMounts.add(`${dev}: ${backing.trim()}`);
    }
  }
}
