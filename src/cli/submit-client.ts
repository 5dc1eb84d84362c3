// The client half of `jobrunner submit`: streaming upload with a progress bar on a terminal,
// following a job's SSE log (reconnecting with Last-Event-ID, so no line is lost or repeated),
// output.tar extraction, and the local-spool equivalent of waiting.
import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { readJson } from '../fsutil.js';
import type { Settings } from '../config.js';
import { JrError, type ErrorCode } from '../errors.js';
import type { JobStatus } from '../spool/record.js';
import { claimPaths, readLease, RUNNING } from '../spool/claim.js';
import { spawnLean } from '../proc.js';
import { SseDecoder } from '../sse.js';
import { formatBytes } from '../units.js';

interface Submitted { id: string; urls: Record<string, string> }

/**
 * No pooled agent: Node 20's global agent gives its sockets a 5 s idle timeout, and the server is
 * silent for longer than that while it fsyncs a large upload (or while a log has no new line).
 */
function request(url: string, opts: http.RequestOptions): http.ClientRequest {
  return (url.startsWith('https:') ? https : http).request(url, { ...opts, agent: false });
}

async function readBody(res: http.IncomingMessage): Promise<string> {
  let s = '';
  for await (const c of res) s += (c as Buffer).toString();
  return s;
}

/** An API error response as a JrError with the server's code. */
function apiError(status: number, body: string): JrError {
  try {
    const e = (JSON.parse(body) as { error: { code: ErrorCode; message: string } }).error;
    return new JrError(e.code, `server: ${e.message} (HTTP ${status})`);
  } catch { return new JrError('JR_E_PROCESS', `server answered HTTP ${status}: ${body.slice(0, 200)}`); }
}

/** POST the image; a progress bar on stderr when it is a terminal. */
export async function apiUpload(server: string, token: string, name: string, file: string, bytes: number): Promise<Submitted> {
  const tty = process.stderr.isTTY === true;
  let sent = 0; let last = 0;
  const progress = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      sent += chunk.length;
      if (tty && (Date.now() - last > 100 || sent === bytes)) {
        last = Date.now();
        const w = 30; const done = bytes ? Math.round((sent / bytes) * w) : w;
        process.stderr.write(`\ruploading [${'#'.repeat(done)}${'.'.repeat(w - done)}] ${formatBytes(sent)} / ${formatBytes(bytes)}`);
      }
      cb(null, chunk);
    },
  });
  const req = request(`${server}/api/v1/jobs?name=${encodeURIComponent(name)}`, {
    method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream', 'content-length': String(bytes) },
  });
  const response = new Promise<http.IncomingMessage>((resolve, reject) => { req.on('response', resolve); req.on('error', reject); });
  await Promise.race([pipeline(createReadStream(file), progress, req), response]).catch((e: unknown) => { throw new JrError('JR_E_PROCESS', `upload to ${server} failed: ${(e as Error).message}`); });
  const res = await response;
  if (tty) process.stderr.write('\n');
  const body = await readBody(res);
  if (res.statusCode !== 201) throw apiError(res.statusCode ?? 0, body);
  return JSON.parse(body) as Submitted;
}

/** Follow job `id`'s log until its final status; print lines when `print`. Reconnects on drops. */
export async function followJob(server: string, token: string, id: string, print: boolean): Promise<JobStatus> {
  let lastId: string | null = null;
  for (let attempt = 0; ; attempt++) {
    const r = await new Promise<JobStatus | null>((resolve, reject) => {
      const req = request(`${server}/api/v1/jobs/${id}/log?follow=1`, {
        headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream', ...(lastId ? { 'last-event-id': lastId } : {}) },
      });
      req.on('error', () => resolve(null));
      req.on('response', (res) => {
        if (res.statusCode !== 200) { void readBody(res).then((b) => reject(apiError(res.statusCode ?? 0, b))); return; }
        const sse = new SseDecoder(); let final: JobStatus | null = null;
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          for (const ev of sse.feed(d)) {
            if (ev.id !== null) lastId = ev.id;
            if (ev.event === 'end') final = JSON.parse(ev.data) as JobStatus;
            else if (print) process.stdout.write(`${ev.data}\n`);
          }
        });
        res.on('end', () => resolve(final));
        res.on('error', () => resolve(final));
      });
      req.end();
    });
    if (r) return r;
    if (attempt > 100) throw new JrError('JR_E_PROCESS', `lost the log stream of job ${id} too often`);
    await new Promise((res) => setTimeout(res, Math.min(5000, 500 * (attempt + 1))));
  }
}

/** Download output.tar of a finished job and unpack it into `outDir` (tar refuses absolute and .. paths). */
export async function extractOutput(server: string, token: string, id: string, outDir: string, st: JobStatus): Promise<void> {
  if (!st.output) { process.stderr.write(`job ${id} has no result image: nothing to extract\n`); return; }
  await mkdir(outDir, { recursive: true });
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    const req = request(`${server}/api/v1/jobs/${id}/output.tar`, { headers: { authorization: `Bearer ${token}` } });
    req.on('response', resolve); req.on('error', reject); req.end();
  });
  if (res.statusCode !== 200) { const b = await readBody(res); if (res.statusCode === 404) { process.stderr.write(`${apiError(404, b).message}\n`); return; } throw apiError(res.statusCode ?? 0, b); }
  await unpackOutput(outDir, res);
}

/**
 * Unpack a tar of output/... into `outDir` (tar refuses absolute and .. paths; owners are not
 * kept): streamed (the API's output.tar) or a local NAME.output.tar.xz ("publish": "output").
 */
export async function unpackOutput(outDir: string, from: NodeJS.ReadableStream | string): Promise<void> {
  await mkdir(outDir, { recursive: true });
  const local = typeof from === 'string';
  const tar = spawnLean('tar', ['-x', '--no-same-owner', '-C', outDir, ...(local ? ['-J', '-f', from] : ['-f', '-'])], { stdin: local ? 'ignore' : 'pipe' });
  tar.stderr.resume();
  if (!local) {
    try {
      await pipeline(from, intoTar(tar.stdin!, tar.done));
    } catch (e) {
      tar.kill('SIGKILL');
      const r = await tar.done;
      // tar's own failure (a bad archive, a full disk) is the cause; otherwise the stream broke.
      if (r.exitCode !== null && r.exitCode !== 0) throw new JrError('JR_E_PROCESS', `unpacking /job/output into ${outDir} failed (tar exit ${r.exitCode})`);
      throw new JrError('JR_E_PROCESS', `downloading /job/output failed: ${(e as Error).message}`, { cause: e });
    }
  }
  const done = await tar.done;
  if (done.exitCode !== 0) throw new JrError('JR_E_PROCESS', `unpacking /job/output into ${outDir} failed (tar exit ${done.exitCode})`);
  process.stderr.write(`extracted /job/output into ${path.join(outDir, 'output')}\n`);
}

/**
 * Where a streamed tar goes: tar's stdin while tar reads it. GNU tar exits as soon as it has read
 * the end-of-archive blocks, possibly before the response has ended (the server ends the stream
 * only once it knows the whole result decoded); node then destroys the child's stdin, and piping
 * straight into it fails with "Premature close" although tar got everything. So the rest of the
 * stream is read to its end and dropped: tar's exit code judges what it read, and the stream's own
 * end (not an abort) says the server finished cleanly. A tar that failed stops the download.
 */
function intoTar(stdin: Writable, exited: Promise<{ exitCode: number | null }>): Writable {
  let failed: number | null | undefined; // set once tar has exited (0: it read a whole archive)
  void exited.then((r) => { failed = r.exitCode; });
  stdin.on('error', () => undefined); // EPIPE once tar has gone: judged by its exit code, above
  const gone = (): boolean => stdin.destroyed || stdin.writableEnded;
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      if (failed !== undefined && failed !== 0) { cb(new Error(`tar exited with ${failed}`)); return; }
      if (gone() || stdin.write(chunk)) { cb(); return; }
      const go = (): void => { stdin.off('drain', go); stdin.off('close', go); cb(); };
      stdin.on('drain', go); stdin.on('close', go);
    },
    final(cb) { if (!gone()) stdin.end(); cb(); },
  });
}

/** Local spool: wait for the status of queue file `file` (submitted at or after `since`). */
export async function waitLocal(s: Settings, file: string, since: Date, print: boolean): Promise<JobStatus> {
  let printed = 0;
  for (;;) {
    for (const dir of [s.done, s.failed]) {
      for (const f of await readdir(dir).catch(() => [] as string[])) {
        if (!f.endsWith('.json') || f.startsWith('.')) continue;
        const st = await readJson(path.join(dir, f)) as JobStatus | null;
        if (st && st.submitted === file && Date.parse(st.finishedAt) >= since.getTime() - 1000) {
          if (print) {
            const log = await readFile(path.join(dir, `${st.publishedAs}.log`)).catch(() => Buffer.alloc(0));
            process.stdout.write(log.subarray(printed));
          }
          return st;
        }
      }
    }
    if (print) {
      // While it runs, print what its claim's console log has grown by.
      for (const id of await readdir(path.join(s.queue, RUNNING)).catch(() => [] as string[])) {
        const dir = path.join(s.queue, RUNNING, id);
        const lease = await readLease(dir);
        if (lease?.submitted !== file) continue;
        const log = await readFile(claimPaths(dir).log).catch(() => Buffer.alloc(0));
        if (log.length > printed) { process.stdout.write(log.subarray(printed)); printed = log.length; }
      }
    }
    await new Promise((r) => setTimeout(r, 300));
  }
}
