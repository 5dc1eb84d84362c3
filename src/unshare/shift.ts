// The base image's root as the sandbox sees it: a copy of root.img whose files belong to the
// sandbox's id window (host base+uid), so root inside owns /usr, /etc, ... as in the VM while on
// the host they belong to an unprivileged range. Built once per base image content and id base,
// cached; the base image itself is never modified (it is shared with the VM path).
import { mkdir, mkdtemp, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { copySparse } from '../fsutil.js';
import type { BaseImage } from '../image/base.js';
import { mountLoop, unmount } from './mounts.js';
import { shiftUp } from './tree.js';

const building = new Map<string, Promise<string>>();

/** Cache file name for a base image and id base: content hash, so an edited base gets a new copy. */
export function shiftedName(base: BaseImage, idBase: number): string {
  return `${base.name}-${base.rootSha256.slice(0, 16)}-${idBase}.img`;
}

/** Path of the shifted copy of `base`'s root, building it first if needed (seconds, once). */
export function shiftedRoot(base: BaseImage, cacheDir: string, idBase: number): Promise<string> {
  const file = path.join(cacheDir, shiftedName(base, idBase));
  let p = building.get(file);
  if (!p) {
    p = build(base, cacheDir, file, idBase).finally(() => building.delete(file));
    building.set(file, p);
  }
  return p;
}

async function build(base: BaseImage, cacheDir: string, file: string, idBase: number): Promise<string> {
  if (await stat(file).then((s) => s.isFile(), () => false)) return file;
  await mkdir(cacheDir, { recursive: true, mode: 0o755 });
  // A half-built copy never carries the final name: another process may be building the same one,
  // and whichever renames last wins with identical content.
  const work = await mkdtemp(path.join(cacheDir, '.build-'));
  const tmp = path.join(work, 'root.img');
  const mnt = path.join(work, 'mnt');
  try {
    await copySparse(base.root, tmp);
    await mkdir(mnt);
    await mountLoop(tmp, mnt, false);
    try { await shiftUp(mnt, { base: idBase }); } finally { await unmount(mnt); }
    await rename(tmp, file);
    return file;
  } finally {
    await unmount(mnt);
    await rm(work, { recursive: true, force: true });
  }
}
