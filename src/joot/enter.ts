// `joot enter`: mount (shared with other sessions), automount /proc /sys /dev /dev/pts, copy host files,
// bind the user's home, chroot, drop to the user with a clean environment, run the shell or command,
// then leave (unmounting what nobody else uses). The command's exit code is enter's exit code.
import { access, readdir, stat } from 'node:fs/promises';
import { constants } from 'node:os';
import { JrError, isJrError } from '../errors.js';
import { run } from '../proc.js';
import { parentOf, procId, signal } from '../procfs.js';
import type { JootConfig } from './config.js';
import { readRecord } from './store.js';
import { acquire, release } from './session.js';
import { hostUser, invokingUser, missingUserHelp, userInside, type UserInfo } from './users.js';

export interface EnterOptions {
  user?: string;
  home: 'rw' | 'ro' | 'none';
  cmd: string[];
  /** Receives warnings (unmount problems when leaving). */
  warn?: (msg: string) => void;
}

// Inside the chroot: start in the user's home (chroot(8) always starts in /), then become the command.
// A fixed script; the user's command travels as separate argv entries, never through the shell parser.
const CD_HOME = 'cd "$HOME" 2>/dev/null || cd /; exec "$@"';

// A fixed lookup instead of which(): spawning a shell to search PATH costs more than the chroot.
async function findChroot(): Promise<string> {
  for (const p of ['/usr/sbin/chroot', '/usr/bin/chroot', '/sbin/chroot']) {
    if (await access(p).then(() => true, () => false)) return p;
  }
  throw new JrError('JR_E_JOOT', 'chroot(8) not found (coreutils)');
}

async function childrenOf(pid: number): Promise<number[]> {
  const out: number[] = [];
  for (const d of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(d)) continue;
    if (await parentOf(Number(d)) === pid) out.push(Number(d));
  }
  return out;
}

/** Enter environment `name`; resolves to the exit code of the command (128+N if killed by signal N). */
export async function enter(cfg: JootConfig, name: string, o: EnterOptions): Promise<number> {
  if (process.getuid?.() !== 0) throw new JrError('JR_E_PERMISSION', 'joot enter needs root (mount, chroot): run it with sudo');
  const rec = await readRecord(cfg.home, name);
  const holder = await procId(process.pid);
  if (!holder) throw new JrError('JR_E_INTERNAL', 'cannot read our own /proc entry');
  const chroot = await findChroot();
  // Ctrl-C and Ctrl-\ belong to the command inside; we must survive them to unmount afterwards.
  // TERM and HUP are passed on to the command, and we clean up when it has gone.
  const ignore = () => {};
  const forward = (sig: NodeJS.Signals) => { void childrenOf(process.pid).then((ps) => ps.forEach((p) => signal(p, sig))); };
  const handlers: Array<[NodeJS.Signals, (s: NodeJS.Signals) => void]> = [['SIGINT', ignore], ['SIGQUIT', ignore], ['SIGTERM', forward], ['SIGHUP', forward]];
  for (const [s, h] of handlers) process.on(s, h);
  try {
    const userName = o.user ?? invokingUser();
    const found: { user?: UserInfo } = {};
    // One acquire: mount the disk, read the user from the environment, then every automount at once.
    const root = await acquire(cfg.home, rec, {
      holder, system: true, copyFiles: cfg.copyFiles,
      plan: async (r) => {
        const u = await userInside(r, userName);
        const onHost = await hostUser(userName);
        if (!u) throw new JrError('JR_E_JOOT', missingUserHelp(name, userName, onHost));
        const binds = rec.automounts.map((a) => ({ source: a.dir, target: a.dir, readOnly: a.readOnly }));
        // Only a real host home is bound (nobody's /nonexistent is not; binding / would expose the host).
        if (o.home !== 'none' && onHost && onHost.home !== '/' && (await stat(onHost.home).then((st) => st.isDirectory(), () => false))) {
          binds.push({ source: onHost.home, target: onHost.home, readOnly: o.home === 'ro' });
        }
        found.user = u;
        return binds;
      },
    });
    const user = found.user;
    if (!user) throw new JrError('JR_E_INTERNAL', 'user not resolved');
    const env: Record<string, string> = {};
    for (const k of cfg.passEnv) { const v = process.env[k]; if (v !== undefined) env[k] = v; }
    Object.assign(env, {
      PATH: cfg.path, HOME: user.home, USER: user.name, LOGNAME: user.name, SHELL: user.shell || '/bin/sh',
      JOOT_NAME: name, debian_chroot: name, // Debian's bashrc shows debian_chroot in the prompt
    });
    const cmd = o.cmd.length > 0 ? o.cmd : [user.shell || '/bin/sh', '-l'];
    const args = [`--userspec=${user.uid}:${user.gid}`, `--groups=${user.groups.join(',')}`, '--', root, '/bin/sh', '-c', CD_HOME, 'joot', ...cmd];
    try {
      await run(chroot, args, { inherit: true, cleanEnv: true, env });
      return 0;
    } catch (e) {
      if (!isJrError(e, 'JR_E_PROCESS')) throw e;
      const { exitCode, signal: sig } = e.context;
      if (sig) return 128 + (constants.signals[sig as NodeJS.Signals] ?? 0);
      if (typeof exitCode === 'number' && exitCode >= 0) return exitCode;
      throw e;
    }
  } finally {
    try {
      for (const p of await release(cfg.home, name, holder)) o.warn?.(`could not unmount: ${p}`);
    } finally {
      for (const [s, h] of handlers) process.off(s, h);
    }
  }
}
