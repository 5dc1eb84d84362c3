// Shared test helpers: real job images (mkimage), the real base image, CLIs run as processes.
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const BASE_DIR = path.join(REPO, 'base-image');

/**
 * Whether the tests that boot the real base image run: only when it is there and not set aside
 * with JOBRUNNER_SKIP_BASE=1 (the fast tier). In CI they never skip: a missing base is an error.
 */
export function realBaseAvailable(env: NodeJS.ProcessEnv, present: boolean): boolean {
  const have = present && !env.JOBRUNNER_SKIP_BASE;
  if (!have && env.CI) {
    throw new Error(env.JOBRUNNER_SKIP_BASE ? 'CI: JOBRUNNER_SKIP_BASE is set, but CI runs every test' : 'CI: base-image/default is missing; scripts/test builds it first');
  }
  return have;
}
export const HAVE_BASE = realBaseAvailable(process.env, existsSync(path.join(BASE_DIR, 'default', 'image.json')));

/** Root, bubblewrap and the real base image: what --isolation unshare tests need. */
export const CAN_UNSHARE = HAVE_BASE && process.getuid?.() === 0 && existsSync('/usr/bin/bwrap');

export interface ProcResult { code: number | null; signal: string | null; stdout: string; stderr: string; ms: number }

/** Run a program (no shell) and collect everything; never rejects. */
export function runProc(file: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<ProcResult> {
  const t = Date.now();
  return new Promise((resolve) => {
    execFile(file, args, { cwd: opts.cwd ?? REPO, env: { ...process.env, ...opts.env }, timeout: opts.timeoutMs ?? 600_000, maxBuffer: 256 << 20 },
      (err, stdout, stderr) => {
        const e = err as (NodeJS.ErrnoException & { code?: number | string; signal?: string }) | null;
        resolve({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, signal: e?.signal ?? null, stdout, stderr, ms: Date.now() - t });
      });
  });
}

/** ./jobrunner with arguments. */
export function jobrunner(args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<ProcResult> {
  return runProc(path.join(REPO, 'jobrunner'), args, opts);
}

/** A scratch directory under the system temp dir. */
export function scratch(prefix: string): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), `jr-${prefix}-`));
}

/** Write a job tree whose bin/construir is `script` (a /bin/sh script body). */
export async function jobTree(dir: string, script: string, extra: Record<string, string> = {}): Promise<string> {
  await mkdir(path.join(dir, 'bin'), { recursive: true });
  await writeFile(path.join(dir, 'bin', 'construir'), `#!/bin/sh\n${script}\n`);
  await chmod(path.join(dir, 'bin', 'construir'), 0o755);
  for (const [rel, body] of Object.entries(extra)) {
    await mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await writeFile(path.join(dir, rel), body);
  }
  return dir;
}

/** Make a job image from a script with the real mkimage; returns the image path. */
export async function makeJob(work: string, name: string, script: string, extraSize = '64M'): Promise<string> {
  const tree = await jobTree(path.join(work, `${name}.tree`), script);
  const out = path.join(work, `${name}.img`);
  const r = await runProc(path.join(REPO, 'scripts', 'mkimage'), [tree, '-o', out, '--extra', extraSize]);
  if (r.code !== 0) throw new Error(`mkimage failed: ${r.stderr}`);
  return out;
}

/**
 * qemu processes tied to `dir`: its disks are inherited fds on files under the spool, so a qemu is
 * matched by what it holds open (or, for paths given on the command line, by its argv).
 */
export async function qemuProcessesFor(dir: string): Promise<number[]> {
  const { readdir, readFile } = await import('node:fs/promises');
  const { holdsFilesUnder } = await import('../src/procfs.js');
  const pids: number[] = [];
  for (const p of await readdir('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    const cmd = await readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes('qemu-system') && (cmd.includes(dir) || await holdsFilesUnder(Number(p), dir))) pids.push(Number(p));
  }
  return pids;
}

/** Poll `fn` until it returns something truthy, or fail after `ms`. */
export async function waitFor<T>(what: string, fn: () => Promise<T | null | undefined | false>, ms = 15_000, everyMs = 250): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
