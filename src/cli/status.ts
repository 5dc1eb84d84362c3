// `jobrunner status`: queued / running / recently finished, read from the spool alone (works
// whether or not the service is running; reads only, never claims or moves anything).
import { lstat, open, readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { loadSettings, settingsHelp } from '../config.js';
import { pidAlive } from '../fsutil.js';
import type { JobStatus } from '../spool/record.js';
import { claimPaths, RUNNING, type Lease } from '../spool/claim.js';
import { parseSubmission } from '../spool/names.js';
import { formatBytes, formatDuration } from '../units.js';

const HELP = `Usage: jobrunner status [--recent N] [--json] [--queue DIR --done DIR --failed DIR]

Shows queued jobs, running jobs (elapsed time, last console line) and the most recently
finished ones, from the spool directories alone.

${settingsHelp(['queue', 'done', 'failed'])}
  --recent N                  how many finished jobs to list (default 10)
  --json                      machine-readable output
`;

async function lastLine(file: string): Promise<string> {
  try {
    const fh = await open(file, 'r');
    try {
      const { size } = await fh.stat();
      const len = Math.min(size, 8192);
      const buf = Buffer.alloc(len);
      await fh.read(buf, 0, len, size - len);
      const lines = buf.toString('utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('@@construir'));
      return (lines.at(-1) ?? '').slice(0, 120);
    } finally { await fh.close(); }
  } catch { return ''; }
}

/** Entry point of `jobrunner status`. */
export async function statusMain(argv: string[]): Promise<number> {
  if (argv.includes('-h') || argv.includes('--help')) { process.stdout.write(HELP); return 0; }
  let recent = 10; let json = false;
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--json') json = true;
    else if (argv[i] === '--recent') recent = Math.max(0, Number(argv[++i]) || 0);
    else rest.push(argv[i]!);
  }
  const { settings: s } = loadSettings(rest, process.env, ['queue', 'done', 'failed']);
  const queued: Array<{ file: string; bytes: number; since: string }> = [];
  for (const f of await readdir(s.queue).catch(() => [] as string[])) {
    if (!parseSubmission(f)) continue;
    const st = await lstat(path.join(s.queue, f)).catch(() => null);
    if (st) queued.push({ file: f, bytes: st.size, since: st.mtime.toISOString() });
  }
  const running: Array<{ id: string; name: string; attempt: number; elapsedMs: number | null; state: string; lastLine: string }> = [];
  for (const id of await readdir(path.join(s.queue, RUNNING)).catch(() => [] as string[])) {
    const dir = path.join(s.queue, RUNNING, id);
    const lease = JSON.parse(await readFile(claimPaths(dir).lease, 'utf8').catch(() => 'null')) as Lease | null;
    if (!lease) continue;
    const live = pidAlive(lease.servicePid);
    const state = !live ? 'stale (service not running; recovered at next start)' : lease.startedAt ? 'running' : 'claimed';
    running.push({ id, name: lease.name, attempt: lease.attempt, state,
      elapsedMs: lease.startedAt ? Date.now() - Date.parse(lease.startedAt) : null, lastLine: await lastLine(claimPaths(dir).log) });
  }
  const finished: JobStatus[] = [];
  for (const d of [s.done, s.failed]) {
    for (const f of await readdir(d).catch(() => [] as string[])) {
      if (!f.endsWith('.json') || f.startsWith('.')) continue;
      const st = JSON.parse(await readFile(path.join(d, f), 'utf8').catch(() => 'null')) as JobStatus | null;
      if (st?.finishedAt) finished.push(st);
    }
  }
  finished.sort((a, b) => b.finishedAt.localeCompare(a.finishedAt));
  const shown = finished.slice(0, recent);
  if (json) { process.stdout.write(JSON.stringify({ queued, running, finished: shown }, null, 2) + '\n'); return 0; }
  const out: string[] = [];
  out.push(`queued (${queued.length}):`);
  for (const q of queued) out.push(`  ${JSON.stringify(q.file)}  ${formatBytes(q.bytes)}  since ${q.since}`);
  out.push(`running (${running.length}):`);
  for (const r of running) {
    out.push(`  ${r.name} [${r.id}] ${r.state}${r.elapsedMs !== null ? ` for ${formatDuration(r.elapsedMs)}` : ''}${r.attempt > 1 ? ` (attempt ${r.attempt})` : ''}`);
    if (r.lastLine) out.push(`      > ${r.lastLine}`);
  }
  out.push(`recently finished (${shown.length} of ${finished.length}):`);
  for (const f of shown) {
    out.push(`  ${f.finishedAt}  ${f.status.padEnd(11)} ${f.publishedAs}${f.exitCode !== null ? ` exit ${f.exitCode}` : ''}  ${f.reason}`);
  }
  process.stdout.write(out.join('\n') + '\n');
  return 0;
}
