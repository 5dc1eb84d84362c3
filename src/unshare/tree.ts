// Ownership and mode fix-ups over a tree on one of OUR filesystems (the trusted job image, the
// shifted root copy), walked by the host as root. Names are bytes (Buffers: a job may write names
// that are not UTF-8); symlinks are never followed (lchown, lstat); nothing inside is running while
// we walk (the sandbox's pid namespace is gone), so there are no races to win.
import { lchown, lstat, readdir, rm, chmod } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import path from 'node:path';

const join = (dir: Buffer, name: Buffer): Buffer => Buffer.concat([dir, Buffer.from('/'), name]);

/** Visit every entry under `root` (root included), depth-first, never crossing into another mount. */
export async function walkTree(root: string, visit: (p: Buffer, st: Stats) => Promise<void>): Promise<number> {
  const top = Buffer.from(path.resolve(root));
  const dev = (await lstat(top)).dev;
  const stack: Buffer[] = [top];
  let n = 0;
  while (stack.length) {
    const p = stack.pop()!;
    const st = await lstat(p);
    n++;
    await visit(p, st);
    if (st.isDirectory() && st.dev === dev) {
      for (const name of await readdir(p, { encoding: 'buffer' })) stack.push(join(p, name));
    }
  }
  return n;
}

/** A 65536-id window: inside id i is host id base+i. */
export interface IdShift { base: number }

/** Add `base` to every uid/gid below 65536 (the base image's root copy): files look root-owned inside. */
export async function shiftUp(root: string, { base }: IdShift): Promise<number> {
  return walkTree(root, async (p, st) => {
    const uid = st.uid < 65536 ? base + st.uid : base + 65534;
    const gid = st.gid < 65536 ? base + st.gid : base + 65534;
    // chown drops set-id bits and file capabilities: in the sandbox everything runs nosuid anyway.
    await lchown(p, uid, gid);
  });
}

/** Map host ids in the window back to inside ids (the result image must look like the VM's). */
export async function shiftDown(root: string, { base }: IdShift): Promise<number> {
  const back = (id: number): number => (id >= base && id < base + 65536 ? id - base : 65534);
  return walkTree(root, async (p, st) => { await lchown(p, back(st.uid), back(st.gid)); });
}

/**
 * The job's files as copied out of its untrusted image: keep regular files, directories and
 * symlinks only (no FIFOs, sockets or device nodes), strip set-id and sticky-on-files bits, and
 * give everything to inside-root. Returns what was dropped, for the log.
 */
export async function sanitizeStaged(root: string, { base }: IdShift): Promise<{ entries: number; dropped: number; stripped: number }> {
  let dropped = 0;
  let stripped = 0;
  const entries = await walkTree(root, async (p, st) => {
    if (!st.isFile() && !st.isDirectory() && !st.isSymbolicLink()) { await rm(p, { force: true }); dropped++; return; }
    await lchown(p, base, base);
    const mode = Number(st.mode) & 0o7777;
    if (!st.isSymbolicLink() && (mode & 0o6000)) { await chmod(p, mode & ~0o6000); stripped++; }
  });
  return { entries, dropped, stripped };
}
