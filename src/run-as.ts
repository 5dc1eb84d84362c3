// The unprivileged identity qemu runs as. Only root can switch users; for anyone else qemu simply
// runs as the caller, who is already unprivileged.
import { chown } from 'node:fs/promises';
import { JrError } from './errors.js';
import { run } from './proc.js';

export interface RunAs { uid: number; gid: number }

/** Resolve --run-as USER when we are root; undefined when not root or USER is "". */
export async function resolveRunAs(user: string): Promise<RunAs | undefined> {
  if (!user || process.getuid?.() !== 0) return undefined;
  const u = await run('id', ['-u', '--', user], { reject: false });
  const g = await run('id', ['-g', '--', user], { reject: false });
  if (u.exitCode !== 0 || g.exitCode !== 0) {
    throw new JrError('JR_E_CONFIG', `--run-as ${user}: no such user; create it with: useradd --system --no-create-home --shell /usr/sbin/nologin ${user} (or pass --run-as "" to keep qemu as root, not for untrusted jobs)`);
  }
  const id = { uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()) };
  if (id.uid === 0) throw new JrError('JR_E_CONFIG', `--run-as ${user}: that user is root; qemu must run unprivileged`);
  return id;
}

/** Give the qemu user the files it must write (the job's working image, its temp dir) and nothing else. */
export async function handOver(runAs: RunAs | undefined, paths: string[]): Promise<void> {
  if (!runAs) return;
  for (const p of paths) await chown(p, runAs.uid, runAs.gid);
}
