// Results are published like mail: each file is written under a temp name in the target
// directory, fsynced, then linked to its final name (link fails instead of overwriting), and the
// directory is fsynced. NAME.json goes last: its presence means the result is complete.
import { link, readdir, rename, rm, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { entryExists, fsyncPath, tempName } from '../fsutil.js';
import { Semaphore } from '../semaphore.js';

/** Temp files in done/ and failed/ are named .<anything>.tmp (fsutil.tempName); start-up removes leftovers. */
/** Remove temp files a crashed service left in a publish directory; returns how many. */
export async function sweepTemps(dir: string): Promise<number> {
  let n = 0;
  for (const f of await readdir(dir).catch(() => [] as string[])) {
    if (f.startsWith('.') && f.endsWith('.tmp')) { await rm(path.join(dir, f), { force: true }); n++; }
  }
  return n;
}


export interface PublishFiles {
  /** Already-written temp files in `dir`, keyed by final extension (e.g. 'img.xz', 'log'). */
  temps: Record<string, string>;
  /** The status object, written as NAME.json last. */
  status: (finalName: string) => object;
}

// One service publishes into a directory at a time; serialising makes name choice race-free
// among our own concurrent jobs.
const one = new Semaphore(1);

/**
 * Publish under NAME, or NAME-1, NAME-2… when any NAME.* exists already. Returns the final name.
 * Temps are consumed (unlinked) on success and left for the caller to remove on failure;
 * on failure no final name of this result is left behind.
 */
export function publish(dir: string, name: string, files: PublishFiles): Promise<string> {
  return one.run(() => publishNow(dir, name, files));
}

async function publishNow(dir: string, name: string, files: PublishFiles): Promise<string> {
  const exts = [...Object.keys(files.temps), 'json'];
  for (let i = 0; ; i++) {
    const finalName = i === 0 ? name : `${name}-${i}`;
    const taken = await Promise.all(exts.map((e) => entryExists(path.join(dir, `${finalName}.${e}`))));
    if (taken.some(Boolean)) continue;
    // Someone else may take the name between the check and the link: link fails (EEXIST) rather
    // than overwrite, and we move on to the next name.
    if (await publishAs(dir, finalName, files)) return finalName;
  }
}

/**
 * Give `tmp` the name `final` without ever replacing a file: link (true). Under protected_hardlinks
 * a file we do not own (a submitted input, service not root) cannot be linked: it is renamed
 * after checking the name is free (our publishes are serialised) and false is returned.
 */
async function place(tmp: string, final: string): Promise<boolean> {
  try {
    await link(tmp, final);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') throw e;
    if (await entryExists(final)) throw Object.assign(new Error(`EEXIST: ${final} exists`), { code: 'EEXIST' });
    await rename(tmp, final);
    return false;
  }
}

/** Link every temp to its final name, NAME.json last; false when a name was taken meanwhile. */
async function publishAs(dir: string, finalName: string, files: PublishFiles): Promise<boolean> {
  // A failure part-way (disk full) must not leave a result without its NAME.json: every final
  // name made so far is removed again, so the name stays free and nothing partial is visible.
  const made: string[] = [];
  const moved: Array<[string, string]> = [];
  try {
    for (const [ext, tmp] of Object.entries(files.temps)) {
      // A submitted input moved in as evidence may be unreadable to us (not root): we wrote none
      // of its data, so there is nothing of ours to flush; the directory fsync covers its name.
      await fsyncPath(tmp).catch((e: NodeJS.ErrnoException) => { if (e.code !== 'EACCES') throw e; });
      const final = path.join(dir, `${finalName}.${ext}`);
      if (await place(tmp, final)) made.push(final);
      else moved.push([final, tmp]);
    }
    const jsonTmp = tempName(dir, `${finalName}.json`);
    try {
      await writeFile(jsonTmp, JSON.stringify(files.status(finalName), null, 2) + '\n', { mode: 0o644 });
      await fsyncPath(jsonTmp);
      await link(jsonTmp, path.join(dir, `${finalName}.json`));
    } finally {
      await unlink(jsonTmp).catch(() => undefined);
    }
  } catch (e) {
    for (const f of made) await unlink(f).catch(() => undefined);
    for (const [final, tmp] of moved) await rename(final, tmp); // the caller still owns it
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
  for (const tmp of Object.values(files.temps)) await unlink(tmp).catch(() => undefined);
  await fsyncPath(dir);
  return true;
}
