// Users: who invoked joot on the host, and who that is inside an environment (its own /etc/passwd and
// /etc/group, read through resolveInside: the environment's files, never the host's).
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import { resolveInside } from '../image/chroot.js';

export interface PasswdEntry { name: string; uid: number; gid: number; home: string; shell: string }
export interface UserInfo extends PasswdEntry { groups: number[] }

/** Parse /etc/passwd text (pure). */
export function parsePasswd(text: string): PasswdEntry[] {
  return text.split('\n').map((l) => l.split(':')).filter((f) => f.length >= 7 && f[0])
    .map((f) => ({ name: f[0]!, uid: Number(f[2]), gid: Number(f[3]), home: f[5]!, shell: f[6]! }))
    .filter((e) => Number.isInteger(e.uid) && Number.isInteger(e.gid));
}

/** Parse /etc/group text into name, gid and members (pure). */
export function parseGroup(text: string): Array<{ name: string; gid: number; members: string[] }> {
  return text.split('\n').map((l) => l.split(':')).filter((f) => f.length >= 4 && f[0])
    .map((f) => ({ name: f[0]!, gid: Number(f[2]), members: (f[3] ?? '').split(',').filter(Boolean) }))
    .filter((g) => Number.isInteger(g.gid));
}

/** The user joot acts for: SUDO_USER when root ran it through sudo, else the current user. */
export function invokingUser(env: NodeJS.ProcessEnv = process.env): string {
  if (process.getuid?.() === 0 && env.SUDO_USER && env.SUDO_USER !== 'root') return env.SUDO_USER;
  return os.userInfo().username;
}

/** `name` (or a numeric uid) as defined on the host, or null. */
export async function hostUser(name: string): Promise<PasswdEntry | null> {
  const all = parsePasswd(await readFile('/etc/passwd', 'utf8').catch(() => ''));
  return all.find((e) => e.name === name || String(e.uid) === name) ?? null;
}

/** `name` (or a numeric uid) inside the environment at `root`, with its supplementary groups; null if
 *  the environment does not know it. */
export async function userInside(root: string, name: string): Promise<UserInfo | null> {
  const read = async (p: string) => readFile(await resolveInside(root, p), 'utf8').catch(() => '');
  const u = parsePasswd(await read('/etc/passwd')).find((e) => e.name === name || String(e.uid) === name);
  if (!u) return null;
  const groups = parseGroup(await read('/etc/group')).filter((g) => g.gid === u.gid || g.members.includes(u.name)).map((g) => g.gid);
  return { ...u, groups: [...new Set([u.gid, ...groups])] };
}

/** The message for a user that exists on the host but not inside: how to add it. */
export function missingUserHelp(envName: string, user: string, host: PasswdEntry | null): string {
  const ids = host ? ` -u ${host.uid}` : '';
  return `user "${user}" does not exist inside joot "${envName}". Add it (as root inside) with:\n` +
    `  joot enter ${envName} --user root -- useradd -m${ids} -s /bin/bash ${user}\n` +
    `or enter as another user: joot enter ${envName} --user root`;
}
