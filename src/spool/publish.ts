// Results are published like mail: each file is written under a temp name in the target
// directory, made durable, then linked to its final name (link fails instead of overwriting), and
// the names are made durable (each a syncfs barrier shared with concurrent publishes and claims:
// fsync-shared.ts). NAME.json goes last: its presence means the result is complete.
import { link, readdir, rename, rm, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { entryExists, tempName } from '../fsutil.js';
import { syncShared } from '../fsync-shared.js';
import { RwLock } from '../semaphore.js';

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

// Name choice among our own concurrent publishes: link() never replaces a name, so linking
// publishes run together (the loser of a race moves on to NAME-1); the rename fallback (place)
// checks then renames, so it runs alone. Under a flood, publishes then no longer queue one behind
// the other on each other's journal waits.
const names = new RwLock();

/**
 * Run `fn` as a linking publisher (shared with every other linking publish): it may link new
 * names into done/ or failed/, never rename over one. The bulk rejecter (reject-bulk.ts) uses it.
 */
export function asLinkingPublisher<T>(fn: () => Promise<T>): Promise<T> {
  return names.read(fn);
}

/** place() met a temp it may not link and may only rename under the exclusive lock. */
class NeedsRename extends Error {}

/**
 * Publish under NAME, or NAME-1, NAME-2… when any NAME.* exists already. Returns the final name.
 * Temps are consumed (unlinked) on success and left for the caller to remove on failure;
 * on failure no final name of this result is left behind.
 */
export async function publish(dir: string, name: string, files: PublishFiles): Promise<string> {
  // What can be made durable before any final name exists is, outside the serialised part (the
  // temps, and NAME.json under the name that is free now), by one barrier (a syncfs shared with
  // every publish and claim in flight: fsync-shared.ts) instead of an fsync per file.
  const exts = [...Object.keys(files.temps), 'json'];
  let i = 0;
  while (!(await isFree(dir, nameAt(name, i), exts))) i++;
  let status = await writeStatus(dir, nameAt(name, i), files);
  await syncShared(dir);
  try {
    const pick = (mayRename: boolean) => async (): Promise<string> => {
      for (let first = true; ; i++, first = false) {
        const finalName = nameAt(name, i);
        // The guess was checked a moment ago, and link() refuses a taken name anyway.
        if (!(first && !mayRename) && !(await isFree(dir, finalName, exts))) continue;
        // Taken meanwhile (rare): NAME.json names the result, so it is written again for this name.
        if (status.name !== finalName) {
          await unlink(status.tmp).catch(() => undefined);
          status = await writeStatus(dir, finalName, files);
          await syncShared(dir); // its content is durable before its name can appear
        }
        // Someone else may take the name between the check and the link: link fails (EEXIST) rather
        // than overwrite, and we move on to the next name.
        if (await publishAs(dir, finalName, files, status.tmp, mayRename)) return finalName;
      }
    };
    const finalName = await names.read(pick(false)).catch((e: unknown) => {
      if (!(e instanceof NeedsRename)) throw e;
      return names.write(pick(true));
    });
    for (const tmp of Object.values(files.temps)) await unlink(tmp).catch(() => undefined);
    // The final names are durable before the caller drops the claim.
    await syncShared(dir);
    return finalName;
  } finally {
    await unlink(status.tmp).catch(() => undefined);
  }
}

/** The i-th candidate name for a result: NAME, NAME-1, NAME-2… */
export const nameAt = (name: string, i: number): string => (i === 0 ? name : `${name}-${i}`);

async function isFree(dir: string, finalName: string, exts: string[]): Promise<boolean> {
  const taken = await Promise.all(exts.map((e) => entryExists(path.join(dir, `${finalName}.${e}`))));
  return !taken.some(Boolean);
}

/** NAME.json's content under a temp name (the caller makes it durable): linked last, its presence means complete. */
async function writeStatus(dir: string, finalName: string, files: PublishFiles): Promise<{ name: string; tmp: string }> {
  const tmp = tempName(dir, `${finalName}.json`);
  try {
    await writeFile(tmp, JSON.stringify(files.status(finalName), null, 2) + '\n', { mode: 0o644 });
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  return { name: finalName, tmp };
}

/**
 * Give `tmp` the name `final` without ever replacing a file: link (true). Under protected_hardlinks
 * a file we do not own (a submitted input, service not root) cannot be linked: it is renamed
 * after checking the name is free (such renames run alone: the exclusive lock) and false is returned.
 */
async function place(tmp: string, final: string, mayRename: boolean): Promise<boolean> {
  try {
    await link(tmp, final);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') throw e;
    if (!mayRename) throw new NeedsRename(`${tmp} cannot be linked`);
    if (await entryExists(final)) throw Object.assign(new Error(`EEXIST: ${final} exists`), { code: 'EEXIST' });
    await rename(tmp, final);
    return false;
  }
}

/** Link every temp (already durable) to its final name, NAME.json last; false when a name was taken meanwhile. */
async function publishAs(dir: string, finalName: string, files: PublishFiles, jsonTmp: string, mayRename: boolean): Promise<boolean> {
  // A failure part-way (disk full) must not leave a result without its NAME.json: every final
  // name made so far is removed again, so the name stays free and nothing partial is visible.
  const made: string[] = [];
  const moved: Array<[string, string]> = [];
  try {
    for (const [ext, tmp] of Object.entries(files.temps)) {
      const final = path.join(dir, `${finalName}.${ext}`);
      if (await place(tmp, final, mayRename)) made.push(final);
      else moved.push([final, tmp]);
    }
    await link(jsonTmp, path.join(dir, `${finalName}.json`));
  } catch (e) {
    for (const f of made) await unlink(f).catch(() => undefined);
    for (const [final, tmp] of moved) await rename(final, tmp); // the caller still owns it
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
  return true;
}
