// Results are published like mail: each file is written under a temp name in the target
// directory, fsynced, then linked to its final name (link fails instead of overwriting), and the
// directory is fsynced. NAME.json goes last: its presence means the result is complete.
import { link, lstat, readdir, rm, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fsyncPath } from '../fsutil.js';

/** Temp files in done/ and failed/ are named .<anything>.tmp; start-up removes leftovers. */
export function tempName(dir: string, label: string): string {
  return path.join(dir, `.${label}.${process.pid}.${Date.now().toString(36)}.tmp`);
}

/** Remove temp files a crashed service left in a publish directory; returns how many. */
export async function sweepTemps(dir: string): Promise<number> {
  let n = 0;
  for (const f of await readdir(dir).catch(() => [] as string[])) {
    if (f.startsWith('.') && f.endsWith('.tmp')) { await rm(path.join(dir, f), { force: true }); n++; }
  }
  return n;
}

async function exists(p: string): Promise<boolean> {
  return lstat(p).then(() => true, () => false);
}

export interface PublishFiles {
  /** Already-written temp files in `dir`, keyed by final extension (e.g. 'img.xz', 'log'). */
  temps: Record<string, string>;
  /** The status object, written as NAME.json last. */
  status: (finalName: string) => object;
}

// One service publishes into a directory at a time; this chain makes name choice race-free
// among our own concurrent jobs.
let chain: Promise<unknown> = Promise.resolve();

/**
 * Publish under NAME, or NAME-1, NAME-2… when any NAME.* exists already. Returns the final name.
 * Temps are consumed (unlinked) on success and left for the caller to remove on failure.
 */
export function publish(dir: string, name: string, files: PublishFiles): Promise<string> {
  const p = chain.then(() => publishNow(dir, name, files));
  chain = p.catch(() => undefined);
  return p;
}

async function publishNow(dir: string, name: string, files: PublishFiles): Promise<string> {
  const exts = [...Object.keys(files.temps), 'json'];
  let finalName = name;
  for (let i = 1; ; i++) {
    const taken = await Promise.all(exts.map((e) => exists(path.join(dir, `${finalName}.${e}`))));
    if (!taken.some(Boolean)) break;
    finalName = `${name}-${i}`;
  }
  for (const [ext, tmp] of Object.entries(files.temps)) {
    await fsyncPath(tmp);
    await link(tmp, path.join(dir, `${finalName}.${ext}`));
    await unlink(tmp);
  }
  const jsonTmp = tempName(dir, `${finalName}.json`);
  await writeFile(jsonTmp, JSON.stringify(files.status(finalName), null, 2) + '\n', { mode: 0o644 });
  await fsyncPath(jsonTmp);
  try {
    await link(jsonTmp, path.join(dir, `${finalName}.json`));
  } finally {
    await unlink(jsonTmp).catch(() => undefined);
  }
  await fsyncPath(dir);
  return finalName;
}
