// Helpers for the HTTP API tests: a real service with --listen on a free loopback port, tokens
// made with the real CLI, uploads, raw sockets for broken requests, an SSE reader.
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { SseDecoder, type SseEvent } from '../src/sse.js';
import { REPO, jobrunner, scratch } from './helpers.js';

export interface ApiService {
  root: string; queue: string; done: string; failed: string; url: string; port: number;
  env: NodeJS.ProcessEnv; child: ChildProcess; output: () => string; exited: Promise<number | null>;
  stop: () => Promise<number | null>;
}

/** A free TCP port on 127.0.0.1 (bound and released: a tiny race, fine for tests). */
export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}

/** Start `jobrunner` on a fresh spool with --listen; resolves once the API answers. */
export async function startApiService(name: string, extra: string[] = [], root?: string, moreEnv: NodeJS.ProcessEnv = {}): Promise<ApiService> {
  root ??= await scratch(name);
  const port = await freePort();
  const s = { root, queue: path.join(root, 'queue'), done: path.join(root, 'done'), failed: path.join(root, 'failed') };
  await writeFile(path.join(root, 'config.json'), '{}');
  const env = { ...process.env, ...moreEnv, JOBRUNNER_CONFIG: path.join(root, 'config.json') };
  // A flag given twice is an error (convict): defaults only for what `extra` does not set.
  const defaults = [['--settle', '300ms'], ['--rescan-interval', '2s'], ['--log-level', 'debug']].filter(([f]) => !extra.includes(f!)).flat();
  const args = ['--queue', s.queue, '--done', s.done, '--failed', s.failed, ...defaults, '--listen', `127.0.0.1:${port}`, ...extra];
  const child = spawn(path.join(REPO, 'jobrunner'), args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const url = `http://127.0.0.1:${port}`;
  const end = Date.now() + 120_000;
  for (;;) {
    const ok = await fetch(`${url}/api/v1/machine`).then((r) => r.ok, () => false);
    if (ok) break;
    if (child.exitCode !== null || Date.now() > end) throw new Error(`service did not come up:\n${out}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  const stop = async (): Promise<number | null> => { if (child.exitCode === null) child.kill('SIGTERM'); return exited; };
  return { ...s, url, port, env, child, output: () => out, exited, stop };
}

/** `jobrunner token add NAME ...` against the service's config; returns the secret. */
export async function addToken(svc: ApiService, name: string, extra: string[] = []): Promise<string> {
  const r = await jobrunner(['token', 'add', name, ...extra], { env: svc.env });
  if (r.code !== 0) throw new Error(`token add failed: ${r.stderr}`);
  return r.stdout.trim();
}

/** POST an image file as a job. */
export async function upload(svc: ApiService, file: string, name: string, token: string | null): Promise<Response> {
  const body = await readFile(file);
  return fetch(`${svc.url}/api/v1/jobs?name=${encodeURIComponent(name)}`, {
    method: 'POST', body, headers: { 'content-type': 'application/octet-stream', ...(token ? { authorization: `Bearer ${token}` } : {}) },
  });
}

/** Send raw bytes on a fresh connection; resolves with what came back when the socket closes (or after ms). */
export function rawRequest(port: number, chunks: Array<Buffer | string>, o: { endAfterMs?: number; destroyAfterWrite?: boolean } = {}): Promise<string> {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    let got = '';
    sock.on('data', (d) => { got += d.toString('latin1'); });
    sock.on('error', () => undefined);
    sock.on('close', () => resolve(got));
    sock.on('connect', () => {
      for (const c of chunks) sock.write(c);
      if (o.destroyAfterWrite) setTimeout(() => sock.destroy(), 200);
    });
    if (o.endAfterMs) setTimeout(() => { sock.destroy(); }, o.endAfterMs);
  });
}

export type { SseEvent };

/**
 * Read SSE events from `path` until `stop(ev)` says so or the stream ends; then close.
 * `lastEventId` is sent as Last-Event-ID.
 */
export function readSse(svc: ApiService, p: string, stop: (ev: SseEvent, all: SseEvent[]) => boolean, lastEventId?: string): Promise<SseEvent[]> {
  return new Promise((resolve, reject) => {
    const events: SseEvent[] = [];
    const req = http.get(`${svc.url}${p}`, { headers: lastEventId ? { 'last-event-id': lastEventId } : {} }, (res) => {
      if (res.statusCode !== 200) { reject(new Error(`SSE ${p}: HTTP ${res.statusCode}`)); return; }
      const sse = new SseDecoder();
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        for (const ev of sse.feed(d)) {
          events.push(ev);
          if (stop(ev, events)) { req.destroy(); resolve(events); return; }
        }
      });
      res.on('end', () => resolve(events));
      res.on('error', () => resolve(events));
    });
    req.on('error', (e) => { if (!req.destroyed) reject(e); else resolve(events); });
  });
}

/** Entries of queue/ other than the service's own directories (what a failed upload must not leave). */
export async function queueLeftovers(svc: ApiService): Promise<string[]> {
  return (await readdir(svc.queue)).filter((f) => !['.running', '.uploads', '.jobrunner.lock'].includes(f));
}

/** Upload records in queue/.uploads (none when the first upload has not made the directory yet). */
export async function uploadRecords(svc: ApiService): Promise<string[]> {
  return readdir(path.join(svc.queue, '.uploads')).catch((e: NodeJS.ErrnoException) => { if (e.code === 'ENOENT') return []; throw e; });
}

/** Poll until fn returns a truthy value. */
export async function waitFor<T>(what: string, fn: () => Promise<T | null | undefined | false>, ms: number): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
