// Following a job's console log from a byte offset, across the moment it is published: the
// published NAME.log starts with exactly the bytes of the claim's console.log (publish-result.ts
// copies it, then appends one [jobrunner] line), so an offset stays valid when the source switches.
// Only whole lines are handed out, each with the offset just past it: a follower that resumes
// from the last offset it saw gets every following line once.
import { open, type FileHandle } from 'node:fs/promises';
import type { JobStatus } from '../spool/record.js';

/** The last meaningful line of a console log (control characters removed), '' when none. */
export async function lastConsoleLine(file: string): Promise<string> {
  let fh: FileHandle | null = null;
  try {
    fh = await open(file, 'r');
    const { size } = await fh.stat();
    const len = Math.min(size, 8192);
    const buf = Buffer.alloc(len);
    await fh.read(buf, 0, len, size - len);
    const lines = buf.toString('utf8').split('\n').map(cleanLine).filter((l) => l.trim() && !l.startsWith('@@construir'));
    return (lines.at(-1) ?? '').slice(0, 200);
  } catch { return ''; } finally { await fh?.close(); }
}

/** A console line as text: CR and other control characters (but tab) dropped. */
export function cleanLine(l: string): string {
  return l.replace(/[\x00-\x08\x0a-\x1f\x7f]/g, '');
}

/** Where a job's log is now: growing in its claim, published, or not yet there (queued). */
export type LogSource = { kind: 'live'; file: string } | { kind: 'final'; file: string; status: JobStatus } | { kind: 'none' };

export type LogEvent = { type: 'line'; offset: number; text: string } | { type: 'end'; offset: number; status: JobStatus };

export interface FollowOptions {
  /** Where the job's log is now (JobsApi.logSource); null: the job is gone. */
  source: () => Promise<LogSource | null>;
  from: number;
  signal: AbortSignal;
  pollMs?: number;
  /** Resolves early when the service has news (an event for this job) instead of waiting pollMs. */
  wake?: (ms: number) => Promise<void>;
}

// Small: 200 followers each hold one (16 KiB x 200 = 3 MiB); a burst is read in several passes.
const CHUNK = 16 * 1024;
const GONE_AFTER_MS = 10_000;

/** Yield the log's lines from `from` on, live, until the job's final status. */
export async function* followLog(o: FollowOptions): AsyncGenerator<LogEvent> {
  let offset = o.from;
  let pending = Buffer.alloc(0); // bytes after the last newline, not handed out yet
  const buf = Buffer.alloc(CHUNK);
  let fh: FileHandle | null = null;
  let fhFile = '';
  const wait = o.wake ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  let lostSince: number | null = null;
  try {
    while (!o.signal.aborted) {
      const src = await o.source();
      if (src === null) {
        // Between its claim being dropped and its result being indexed a job is briefly nowhere:
        // only a job missing for a while is gone.
        lostSince ??= Date.now();
        if (Date.now() - lostSince > GONE_AFTER_MS) return;
        await wait(o.pollMs ?? 100);
        continue;
      }
      lostSince = null;
      if (src.kind === 'none') { await wait(o.pollMs ?? 100); continue; }
      if (fhFile !== src.file) {
        await fh?.close();
        fh = await open(src.file, 'r').catch(() => null);
        fhFile = fh ? src.file : '';
        if (!fh) { await wait(o.pollMs ?? 100); continue; }
      }
      // Read everything there is now.
      for (;;) {
        const pos = offset + pending.length;
        const { bytesRead } = await fh!.read(buf, 0, CHUNK, pos);
        if (bytesRead === 0) break;
        pending = Buffer.concat([pending, buf.subarray(0, bytesRead)]);
        let nl: number;
        while ((nl = pending.indexOf(0x0a)) >= 0) {
          offset += nl + 1;
          const text = cleanLine(pending.subarray(0, nl).toString('utf8'));
          pending = pending.subarray(nl + 1);
          yield { type: 'line', offset, text };
          if (o.signal.aborted) return;
        }
      }
      if (src.kind === 'final') {
        // The published log is complete: a last line without a newline still belongs to it.
        if (pending.length > 0) {
          offset += pending.length;
          yield { type: 'line', offset, text: cleanLine(pending.toString('utf8')) };
        }
        yield { type: 'end', offset, status: src.status };
        return;
      }
      await wait(o.pollMs ?? 100);
    }
  } finally {
    await fh?.close();
  }
}
