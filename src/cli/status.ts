// `jobrunner status`: queued / running / recently finished, read from the spool alone (works
// whether or not the service is running; reads only, never claims or moves anything).
import { open } from 'node:fs/promises';
import { loadSettings, settingsHelp } from '../config.js';
import { isAlive } from '../procfs.js';
import { claimPaths } from '../spool/claim.js';
import { recentResults, summariseQueue } from '../spool/listing.js';
import { Spool } from '../spool/spool.js';
import { formatBytes, formatDuration } from '../units.js';
import { parseOwnArgs } from './args.js';

const HELP = `Usage: jobrunner status [--queued N] [--recent N] [--json] [--queue DIR --done DIR --failed DIR]

Shows how many jobs are queued (and the oldest few), running jobs (elapsed time, last console
line) and the most recently finished ones, from the spool directories alone. A queue of any
size is summarised: one lstat per entry, only the shown entries are kept.

${settingsHelp(['queue', 'done', 'failed'])}
  --queued N                  how many queued jobs to list, oldest first (default 10)
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
  const { values, rest } = parseOwnArgs(argv, { help: { type: 'boolean', short: 'h' }, json: { type: 'boolean' }, recent: { type: 'string' }, queued: { type: 'string' } });
  if (values.help) { process.stdout.write(HELP); return 0; }
  const recent = Math.max(0, Number(values.recent ?? 10) || 0);
  const shownQueued = Math.max(0, Number(values.queued ?? 10) || 0);
  const json = values.json === true;
  const { settings: s } = loadSettings(rest, process.env, ['queue', 'done', 'failed']);
  const spool = new Spool(s);
  const q = await summariseQueue(spool.queue, shownQueued);
  const queued = q.oldest;
  const running: Array<{
    id: string; name: string; attempt: number; elapsedMs: number | null; state: string; lastLine: string; node: string | null; slurmJobId: number | null;
  }> = [];
  for (const { id, dir, lease } of await spool.leases()) {
    const live = await isAlive(lease.servicePid);
    // The state the service keeps in the lease (older leases: told from startedAt, as before).
    const kept = lease.state ?? (lease.startedAt ? 'running' : 'claimed');
    const state = !live ? 'stale (service not running; recovered at next start)' : kept;
    running.push({ id, name: lease.name, attempt: lease.attempt, state, node: lease.remote?.node ?? null, slurmJobId: lease.remote?.jobId ?? null,
      elapsedMs: lease.startedAt ? Date.now() - Date.parse(lease.startedAt) : null, lastLine: await lastLine(claimPaths(dir).log) });
  }
  const results = await recentResults([spool.done, spool.failed], recent);
  const shown = results.recent.map((r) => r.status);
  if (json) {
    // `queued` and `finished` hold the shown entries; the counts are of all of them.
    process.stdout.write(JSON.stringify({ queued, queuedCount: q.count, queuedBytes: q.bytes, running, finished: shown, finishedCount: results.count }, null, 2) + '\n');
    return 0;
  }
  const out: string[] = [];
  out.push(`queued (${q.count}, ${formatBytes(q.bytes)}${q.count > 0 ? `, oldest since ${queued[0]?.since ?? '?'}` : ''}):`);
  for (const e of queued) out.push(`  ${JSON.stringify(e.file)}  ${formatBytes(e.bytes)}  since ${e.since}`);
  if (q.count > queued.length) out.push(`  … and ${q.count - queued.length} more (--queued N to list more)`);
  out.push(`running (${running.length}):`);
  for (const r of running) {
    out.push(`  ${r.name} [${r.id}] ${r.state}${r.elapsedMs !== null ? ` for ${formatDuration(r.elapsedMs)}` : ''}${r.attempt > 1 ? ` (attempt ${r.attempt})` : ''}${r.slurmJobId !== null ? ` on ${r.node ?? '(not yet placed)'}, Slurm job ${r.slurmJobId}` : ''}`);
    if (r.lastLine) out.push(`      > ${r.lastLine}`);
  }
  out.push(`recently finished (${shown.length} of ${results.count}):`);
  for (const f of shown) {
    out.push(`  ${f.finishedAt}  ${f.status.padEnd(11)} ${f.publishedAs}${f.exitCode !== null ? ` exit ${f.exitCode}` : ''}  ${f.reason}`);
  }
  process.stdout.write(out.join('\n') + '\n');
  return 0;
}
