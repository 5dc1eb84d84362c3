// Driving the real service as a process over a temporary spool: start it, wait for things, read
// what it published. Shared by the adversarial suite.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { JobStatus } from '../../../src/spool/record.js';
import { REPO, scratch } from '../../helpers.js';

export interface Spool { root: string; queue: string; done: string; failed: string; args: string[]; env: NodeJS.ProcessEnv }

/** A fresh spool under a scratch root (mode 0755 so an unprivileged service or fake qemu can use it). */
export async function makeSpool(name: string, extra: string[] = [], dirs: Partial<Pick<Spool, 'done' | 'failed'>> = {}): Promise<Spool> {
  const root = await scratch(`adv-${name}`);
  await chmod(root, 0o755);
  const s = { root, queue: path.join(root, 'queue'), done: dirs.done ?? path.join(root, 'done'), failed: dirs.failed ?? path.join(root, 'failed') };
  for (const d of [s.queue, s.done, s.failed]) await mkdir(d, { recursive: true });
  await writeFile(path.join(root, 'config.json'), '{}');
  return { ...s, env: { JOBRUNNER_CONFIG: path.join(root, 'config.json'), JOBRUNNER_PREBUILT: '1', JOBRUNNER_LISTEN: 'off' /* not an HTTP test */ },
    args: ['--queue', s.queue, '--done', s.done, '--failed', s.failed, '--settle', '300ms', '--rescan-interval', '1s', '--log-level', 'debug', ...extra] };
}

export interface Service { child: ChildProcess; output: () => string; exited: Promise<number | null> }

/** Start ./jobrunner over the spool; `wrap` prefixes the command (e.g. setpriv to another user). */
export function startService(s: Spool, extra: string[] = [], wrap: string[] = []): Service {
  const argv = [...wrap, path.join(REPO, 'jobrunner'), ...s.args, ...extra];
  const child = spawn(argv[0]!, argv.slice(1), { env: { ...process.env, ...s.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, output: () => out, exited };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export { waitFor } from '../../helpers.js';

/** Every NAME.json in done/ and failed/, with where it was found. */
export async function allStatuses(s: Spool): Promise<Array<JobStatus & { dir: 'done' | 'failed' }>> {
  const out: Array<JobStatus & { dir: 'done' | 'failed' }> = [];
  for (const [dir, label] of [[s.done, 'done'], [s.failed, 'failed']] as const) {
    for (const f of await readdir(dir).catch(() => [] as string[])) {
      if (!f.endsWith('.json') || f.startsWith('.')) continue;
      out.push({ ...(JSON.parse(await readFile(path.join(dir, f), 'utf8')) as JobStatus), dir: label });
    }
  }
  return out;
}

/** The one status whose `submitted` is `submitted` (throws when there is none or several). */
export async function statusOf(s: Spool, submitted: string): Promise<JobStatus & { dir: 'done' | 'failed' }> {
  const all = (await allStatuses(s)).filter((x) => x.submitted === submitted);
  if (all.length !== 1) throw new Error(`expected one status for ${JSON.stringify(submitted)}, found ${all.length}`);
  return all[0]!;
}

export interface LeaseView { id: string; dir: string; qemuPid: number | null; name: string; lastError?: string; attempt: number; requeued?: boolean }

/** Leases of the claims currently in queue/.running. */
export async function leases(s: Spool): Promise<LeaseView[]> {
  const root = path.join(s.queue, '.running');
  const out: LeaseView[] = [];
  for (const id of await readdir(root).catch(() => [] as string[])) {
    const l = JSON.parse(await readFile(path.join(root, id, 'lease.json'), 'utf8').catch(() => 'null')) as LeaseView | null;
    if (l) out.push({ ...l, id, dir: path.join(root, id) });
  }
  return out;
}

/** Streamed sha256 of a file. */
export async function sha256(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(file)) h.update(c as Buffer);
  return h.digest('hex');
}

/** Temp files and claims left behind (must be none after a clean end). */
export async function leftovers(s: Spool): Promise<string[]> {
  const out: string[] = [];
  for (const d of [s.done, s.failed]) for (const f of await readdir(d).catch(() => [] as string[])) if (f.endsWith('.tmp')) out.push(f);
  for (const f of await readdir(path.join(s.queue, '.running')).catch(() => [] as string[])) out.push(`.running/${f}`);
  return out;
}
