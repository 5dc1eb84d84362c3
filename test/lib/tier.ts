// The no-qemu service tier's harness: a temporary spool with a fixture base image and the fake
// qemu, and the real Service over it, either in this process (fast, logs captured) or as
// ./jobrunner (the CLI end to end). Reads results the way an operator would: files in the spool.
import { chmod, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import { loadSettings, type Settings } from '../../src/config.js';
import type { Runner } from '../../src/job/runner.js';
import type { JobStatus } from '../../src/spool/record.js';
import { createLogger } from '../../src/log.js';
import { Service } from '../../src/service.js';
import { scratch, waitFor as pollUntil } from '../helpers.js';
import { fakeQemu, fakeQemuCalls } from './fake-qemu.js';
import { fixtureBase } from './fixture-base.js';

export interface TierSpool {
  root: string; queue: string; done: string; failed: string; baseDir: string; qemu: string;
  /** ./jobrunner flags for this spool (fixture base, fake qemu, short timers). */
  args: string[];
  env: NodeJS.ProcessEnv;
}

/** A fresh spool (mode 0755 so a qemu dropped to jobrunner-qemu can reach its files). */
export async function tierSpool(name: string, extra: string[] = [], opts: { defaultMode?: string } = {}): Promise<TierSpool> {
  const root = await scratch(`tier-${name}`);
  await chmod(root, 0o755);
  const t = { root, queue: path.join(root, 'queue'), done: path.join(root, 'done'), failed: path.join(root, 'failed') };
  for (const d of [t.queue, t.done, t.failed]) await mkdir(d, { recursive: true });
  const baseDir = await fixtureBase(path.join(root, 'base'));
  const qemu = await fakeQemu(root, opts.defaultMode);
  await writeFile(path.join(root, 'config.json'), '{}');
  return {
    ...t, baseDir, qemu,
    env: { JOBRUNNER_CONFIG: path.join(root, 'config.json'), JOBRUNNER_PREBUILT: '1', JOBRUNNER_LISTEN: 'off' /* not an HTTP test: no listener to collide on */ },
    args: ['--queue', t.queue, '--done', t.done, '--failed', t.failed, '--base-image-dir', baseDir, '--qemu', qemu, '--accel', 'tcg',
      // --start cold: the fake qemu does not speak migration or QMP, so it cannot be restored; the
      // restore path is tested on real qemu (test/e2e/restore.test.ts), its fallback here (start-fallback).
      ...withFlags(['--start', 'cold', '--settle', '200ms', '--rescan-interval', '1s', '--boot-timeout', '4s', '--timeout', '20s', '--kill-grace', '1s', '--shutdown-grace', '2s',
        '--log-level', 'debug'], extra)],
  };
}

/**
 * `base` (`--flag value` pairs and `--switch`es) with `extra` appended, dropping the pairs of base that extra
 * sets again: a flag given twice is an error to convict.
 */
export function withFlags(base: string[], extra: string[]): string[] {
  const again = new Set(extra.filter((a) => a.startsWith('--')).map((a) => a.split('=')[0]));
  const out: string[] = [];
  for (let i = 0; i < base.length; i++) {
    const hasValue = !base[i]!.includes('=') && base[i + 1] !== undefined && !base[i + 1]!.startsWith('--');
    const group = base.slice(i, hasValue ? i + 2 : i + 1);
    if (hasValue) i++;
    if (!again.has(group[0]!.split('=')[0])) out.push(...group);
  }
  return [...out, ...extra];
}

export interface LogLine { level: number; msg: string; [k: string]: unknown }

export interface InProcess {
  service: Service;
  settings: Settings;
  logs: LogLine[];
  /** Log lines whose message contains `text`. */
  logged: (text: string) => LogLine[];
}

/** The Service in this process over `t`, started (start() errors reject). Stop it or use --once. */
export async function startInProcess(t: TierSpool, extra: string[] = [], opts: { runner?: Runner } = {}): Promise<InProcess> {
  const svc = makeInProcess(t, extra, opts);
  await svc.service.start();
  return svc;
}

/** The Service in this process over `t`, not yet started. */
export function makeInProcess(t: TierSpool, extra: string[] = [], opts: { runner?: Runner } = {}): InProcess {
  const { settings } = loadSettings(withFlags(t.args, extra), { ...t.env, HOME: t.root });
  const logs: LogLine[] = [];
  let partial = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb): void {
      const lines = (partial + chunk.toString('utf8')).split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) if (l.trim()) logs.push(JSON.parse(l) as LogLine);
      cb();
    },
  });
  const logger = createLogger(settings.logLevel, { destination: sink });
  const service = new Service({ settings, logger, version: 'tier-test', runner: opts.runner });
  return { service, settings, logs, logged: (text) => logs.filter((l) => l.msg.includes(text)) };
}

/** Run the in-process service with --once to its end; returns it (logs inspectable). */
export async function runOnce(t: TierSpool, extra: string[] = [], opts: { runner?: Runner } = {}): Promise<InProcess> {
  const svc = await startInProcess(t, ['--once', ...extra], opts);
  await svc.service.done;
  return svc;
}

export type Published = JobStatus & { dir: 'done' | 'failed' };

/** Every NAME.json in done/ and failed/. */
export async function published(t: TierSpool): Promise<Published[]> {
  const out: Published[] = [];
  for (const dir of ['done', 'failed'] as const) {
    for (const f of (await readdir(t[dir])).sort()) {
      if (f.endsWith('.json') && !f.startsWith('.')) out.push({ ...(JSON.parse(await readFile(path.join(t[dir], f), 'utf8')) as JobStatus), dir });
    }
  }
  return out;
}

/** The one status whose `submitted` is `file`. */
export async function statusOf(t: TierSpool, file: string): Promise<Published> {
  const all = (await published(t)).filter((s) => s.submitted === file);
  if (all.length !== 1) throw new Error(`expected one status for ${file}, found ${all.length}: ${JSON.stringify(all.map((s) => s.publishedAs))}`);
  return all[0]!;
}

/** Modes the fake qemu was started with, in order (one per VM start). */
export async function qemuStarts(t: TierSpool): Promise<string[]> {
  return (await readFile(fakeQemuCalls(t.root), 'utf8')).split('\n').filter(Boolean).map((l) => l.split(' ')[0]!);
}

/** Files in a directory, sorted (dotfiles included). */
export async function ls(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [] as string[])).sort();
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Poll `fn` until truthy (every 100 ms), or throw after `ms`. */
export const waitFor = <T>(what: string, fn: () => Promise<T | null | undefined | false>, ms = 15_000): Promise<T> => pollUntil(what, fn, ms, 100);
