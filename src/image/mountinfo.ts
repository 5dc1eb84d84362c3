// Reading the kernel's mount table (/proc/self/mountinfo). The kernel is the only source of truth for
// "is this mounted": state files say what we meant to do, mountinfo says what is.
import { readFile } from 'node:fs/promises';
import path from 'node:path';

export interface MountEntry {
  id: number;
  parent: number;
  mountpoint: string;
  fstype: string;
  source: string;
  options: string;
}

// mountinfo escapes space, tab, newline and backslash as \ooo octal.
function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Parse mountinfo text into entries (pure, for tests). */
export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const f = line.split(' ');
    const sep = f.indexOf('-', 6);
    if (sep < 0 || f.length < sep + 3) continue;
    out.push({
      id: Number(f[0]), parent: Number(f[1]), mountpoint: unescape(f[4] ?? ''),
      options: f[5] ?? '', fstype: f[sep + 1] ?? '', source: unescape(f[sep + 2] ?? ''),
    });
  }
  return out;
}

/** The current mount table of this process's mount namespace. */
export async function mounts(): Promise<MountEntry[]> {
  return parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8'));
}

/** True when something is mounted exactly at `p` (absolute path, no trailing slash). */
export async function isMounted(p: string): Promise<boolean> {
  const want = path.resolve(p);
  return (await mounts()).some((m) => m.mountpoint === want);
}

/** Mount points at or below `dir`, deepest first (the order in which to unmount them). */
export async function mountsUnder(dir: string): Promise<string[]> {
  const base = path.resolve(dir);
  const hits = (await mounts())
    .map((m) => m.mountpoint)
    .filter((mp) => mp === base || mp.startsWith(base + '/'));
  return [...new Set(hits)].sort((a, b) => b.length - a.length);
}
