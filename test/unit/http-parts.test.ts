// The pure parts of the HTTP API: Range parsing, /proc parsing for the heartbeat, token store
// (0600, sha256 only, revoke), per-token quota, and the log follower's offsets across the switch
// from the claim's console.log to the published NAME.log.
import { execFileSync } from 'node:child_process';
import { appendFile, mkdir, mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadSettings } from '../../src/config.js';
import { isJrError } from '../../src/errors.js';
import { parseListen } from '../../src/http/server.js';
import { parseRange } from '../../src/http/range.js';
import { resultFileName, type JobStatus } from '../../src/spool/record.js';
import { resultOutputTar } from '../../src/service/output-tar.js';
import { cpuSecondsFromStat, writeBytesFromIo } from '../../src/service/heartbeat.js';
import { followLog } from '../../src/service/log-tail.js';
import type { LogSource } from '../../src/service/log-tail.js';
import { Quota } from '../../src/service/quota.js';
import { addToken, readTokens, revokeToken, TokenStore } from '../../src/service/tokens.js';
import { idInFileName, uploadFileName } from '../../src/service/uploads.js';

const tmp = (): Promise<string> => mkdtemp(path.join(os.tmpdir(), 'jr-http-unit-'));

describe('parseRange', () => {
  it('handles A-B, A-, -N and refuses what does not fit', () => {
    expect(parseRange(undefined, 100)).toBeNull();
    expect(parseRange('bytes=0-9', 100)).toEqual([0, 9]);
    expect(parseRange('bytes=90-', 100)).toEqual([90, 99]);
    expect(parseRange('bytes=-10', 100)).toEqual([90, 99]);
    expect(parseRange('bytes=50-1000', 100)).toEqual([50, 99]);
    for (const bad of ['bytes=100-', 'bytes=5-2', 'items=0-1', 'bytes=0-1,3-4', 'bytes=-']) {
      expect(() => parseRange(bad, 100)).toThrow();
    }
  });
});

describe('heartbeat parsing', () => {
  it('reads utime+stime after a comm with spaces and parentheses', () => {
    const stat = '1234 (qemu (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 100 0 0';
    expect(cpuSecondsFromStat(stat)).toBe(3);
    expect(cpuSecondsFromStat('garbage')).toBeNull();
    expect(writeBytesFromIo('rchar: 1\nwchar: 2\nread_bytes: 3\nwrite_bytes: 4096\ncancelled_write_bytes: 0\n')).toBe(4096);
  });
});

describe('upload file names', () => {
  it('carry an id that only an upload-shaped name yields', () => {
    expect(idInFileName(uploadFileName('hello', 'mx7cchim-5d020704', true))).toBe('mx7cchim-5d020704');
    expect(idInFileName('hello~../../etc.img')).toBeNull();
    expect(idInFileName('hello.img')).toBeNull();
  });
});

describe('token store', () => {
  it('keeps only sha256 in a 0600 file, verifies, picks up additions at once, revokes', async () => {
    const dir = await tmp();
    const file = path.join(dir, 'tokens.json');
    const store = new TokenStore(file);
    expect(await store.verify('jr_nothing')).toBeNull();
    const a = await addToken(file, 'alice', { maxActive: 2, maxImageSize: null, ratePerMin: null });
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(await readFile(file, 'utf8')).not.toContain(a);
    expect((await store.verify(a))?.name).toBe('alice');
    expect(await store.verify(a + 'x')).toBeNull();
    await expect(addToken(file, 'alice', { maxActive: null, maxImageSize: null, ratePerMin: null })).rejects.toThrow(/exists/);
    await expect(addToken(file, '../evil', { maxActive: null, maxImageSize: null, ratePerMin: null })).rejects.toThrow(/token name/);
    expect(await revokeToken(file, 'alice')).toBe(true);
    expect(await readTokens(file)).toEqual([]);
    await new Promise((r) => setTimeout(r, 20));
    expect(await store.verify(a)).toBeNull();
  });
});

describe('quota', () => {
  const tok = { name: 't', sha256: '0'.repeat(64), createdAt: '', maxActive: 2, maxImageSize: null, ratePerMin: 3 };
  it('counts in-flight uploads toward --max-active and answers 429 with a Retry-After', () => {
    const q = new Quota();
    const r1 = q.admit(tok, 1, 0);
    try { q.admit(tok, 1, 1); expect.unreachable(); } catch (e) { expect(isJrError(e, 'JR_E_RATE') && e.context.retryAfter).toBe(30); }
    r1();
    q.admit(tok, 0, 2)();
    q.admit(tok, 0, 3)();
    try { q.admit(tok, 0, 4); expect.unreachable(); } catch (e) { expect(isJrError(e, 'JR_E_RATE') && e.context.retryAfter).toBe(60); }
    q.admit(tok, 0, 60_001)();
  });
});

describe('followLog', () => {
  it('hands out whole lines with the offset past each, across the switch to the published log', async () => {
    const dir = await tmp();
    const live = path.join(dir, 'console.log');
    const fin = path.join(dir, 'final.log');
    await writeFile(live, 'one\ntw');
    let src: LogSource = { kind: 'live', file: live };
    const ctl = new AbortController();
    const seen: Array<{ type: string; offset: number; text?: string }> = [];
    const run = (async () => {
      for await (const ev of followLog({ source: async () => src, from: 0, signal: ctl.signal, pollMs: 10 })) {
        seen.push(ev.type === 'line' ? { type: 'line', offset: ev.offset, text: ev.text } : { type: 'end', offset: ev.offset });
      }
    })();
    await new Promise((r) => setTimeout(r, 60));
    expect(seen).toEqual([{ type: 'line', offset: 4, text: 'one' }]);
    await appendFile(live, 'o\r\nthree\n');
    await new Promise((r) => setTimeout(r, 60));
    await writeFile(fin, 'one\ntwo\r\nthree\n[jobrunner] succeeded: ok\n');
    src = { kind: 'final', file: fin, status: { id: 'x' } as JobStatus };
    await run;
    expect(seen).toEqual([
      { type: 'line', offset: 4, text: 'one' }, { type: 'line', offset: 9, text: 'two' }, { type: 'line', offset: 15, text: 'three' },
      { type: 'line', offset: 41, text: '[jobrunner] succeeded: ok' }, { type: 'end', offset: 41 },
    ]);
    // Resuming from an offset gives the rest, nothing repeated.
    const rest: string[] = [];
    for await (const ev of followLog({ source: async () => src, from: 9, signal: new AbortController().signal })) if (ev.type === 'line') rest.push(ev.text);
    expect(rest).toEqual(['three', '[jobrunner] succeeded: ok']);
  });
});

describe('--listen', () => {
  const env = { HOME: '/nonexistent' };
  it('takes HOST:PORT, [v6]:PORT or off, and nothing else', () => {
    expect(loadSettings([], env).settings.listen).toBe('127.0.0.1:7480');
    expect(loadSettings(['--listen', 'off'], env).settings.listen).toBe('off');
    expect(parseListen(loadSettings(['--listen', '[::1]:8080'], env).settings.listen)).toEqual({ host: '::1', port: 8080 });
    expect(parseListen('0.0.0.0:7480')).toEqual({ host: '0.0.0.0', port: 7480 });
    for (const bad of ['7480', 'host:', 'a b:1', 'h:70000', 'h:1;rm']) expect(() => loadSettings(['--listen', bad], env), bad).toThrow(/listen/);
    expect(loadSettings([], env).settings.tokens).toBe('/nonexistent/jobrunner.tokens.json');
  });
});

describe('Uploads: the id travels only with the bytes the upload wrote', () => {
  it('match() refuses a swapped file, confirm() a swap after the check, and a record is used once', async () => {
    const { Readable } = await import('node:stream');
    const { Uploads } = await import('../../src/service/uploads.js');
    const { mkdir, rename, writeFile: wf } = await import('node:fs/promises');
    const q = await tmp();
    const u = new Uploads(q);
    await u.open();
    const body = Buffer.concat([Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), Buffer.alloc(5000, 1)]);
    const rec = await u.receive(Readable.from([body]), { name: 'n', owner: 'o', limits: { cap: 1 << 20, reserve: 0 }, declared: body.length, complete: () => true });
    expect(rec.file).toBe(`n~${rec.id}.img.xz`);
    expect((await u.match(rec.file))?.id).toBe(rec.id);
    // Swapped before the claim: no match.
    await wf(path.join(q, 'other'), body);
    await rename(path.join(q, rec.file), path.join(q, 'orig'));
    await rename(path.join(q, 'other'), path.join(q, rec.file));
    expect(await u.match(rec.file)).toBeNull();
    // Swapped between the check and the claim: confirm() on the claimed file says no.
    await mkdir(path.join(q, 'claimed'));
    expect(await u.confirm(rec, path.join(q, rec.file))).toBe(false);
    // The genuine file confirms once; then the record is used.
    expect(await u.confirm(rec, path.join(q, 'orig'))).toBe(true);
    await rename(path.join(q, 'orig'), path.join(q, rec.file));
    expect(await u.match(rec.file)).toBeNull();
    // Over the cap mid-stream, or cut off: nothing left, no record.
    await expect(u.receive(Readable.from([body, body]), { name: 'big', owner: 'o', limits: { cap: body.length, reserve: 0 }, declared: null, complete: () => true })).rejects.toThrow(/passed/);
    await expect(u.receive(Readable.from([body]), { name: 'cut', owner: 'o', limits: { cap: 1 << 20, reserve: 0 }, declared: body.length + 1, complete: () => false })).rejects.toThrow(/ended early/);
    const { readdir: rd } = await import('node:fs/promises');
    expect((await rd(q)).filter((f) => f.startsWith('.upload-') || f.startsWith('big') || f.startsWith('cut'))).toEqual([]);
    expect(await rd(u.dir)).toEqual([`${rec.id}.json`]);
  });

  it('writes bodies of many batches byte for byte, side by side, and gives their batch memory back', async () => {
    const { Readable } = await import('node:stream');
    const { randomBytes } = await import('node:crypto');
    const { Uploads, uploadBatchBytes, uploadBatchPeak } = await import('../../src/service/uploads.js');
    const { readFile: rf, readdir: rd } = await import('node:fs/promises');
    const q = await tmp();
    const u = new Uploads(q);
    const chunks = (b: Buffer, n: number): Buffer[] => Array.from({ length: Math.ceil(b.length / n) }, (_, i) => b.subarray(i * n, (i + 1) * n));
    // Twelve at once (past the budget of large batches), 3 MiB each in socket-sized pieces.
    const bodies = Array.from({ length: 12 }, () => Buffer.concat([Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), randomBytes(3 * 1024 * 1024 + 12345)]));
    uploadBatchPeak();
    const recs = await Promise.all(bodies.map((b, i) => u.receive(Readable.from(chunks(b, 65536)), { name: `m${i}`, owner: 'o', limits: { cap: 1 << 30, reserve: 0 }, declared: b.length, complete: () => true })));
    for (const [i, r] of recs.entries()) expect((await rf(path.join(q, r.file))).equals(bodies[i]!)).toBe(true);
    expect(uploadBatchBytes()).toBe(0);
    // The budget held: 8 MiB of 1 MiB batches, past it 256 KiB ones (at most two per upload: one
    // being written, one filling). Twelve uploads buffering their bodies whole would pass 36 MiB.
    const peak = uploadBatchPeak();
    expect(peak).toBeGreaterThan(1024 * 1024);
    expect(peak).toBeLessThanOrEqual(8 * 1024 * 1024 + 2 * 12 * 256 * 1024);
    // Failing after several batches (over the cap, cut off): nothing left, nothing still counted.
    const b = bodies[0]!;
    await expect(u.receive(Readable.from(chunks(b, 65536)), { name: 'big', owner: 'o', limits: { cap: 2 * 1024 * 1024, reserve: 0 }, declared: null, complete: () => true })).rejects.toThrow(/passed/);
    await expect(u.receive(Readable.from(chunks(b, 65536)), { name: 'cut', owner: 'o', limits: { cap: 1 << 30, reserve: 0 }, declared: b.length + 1, complete: () => false })).rejects.toThrow(/ended early/);
    const pieces = chunks(b, 65536).slice(0, 30);
    const failing = new Readable({ read() { const c = pieces.shift(); if (c) this.push(c); else this.destroy(new Error('socket reset')); } });
    await expect(u.receive(failing, { name: 'err', owner: 'o', limits: { cap: 1 << 30, reserve: 0 }, declared: null, complete: () => false })).rejects.toThrow(/socket reset/);
    expect(uploadBatchBytes()).toBe(0);
    expect((await rd(q)).filter((f) => f.startsWith('.upload-') || /^(big|cut|err)/.test(f))).toEqual([]);
  });
});

describe('a result published as output (NAME.output.tar.xz)', () => {
  it('is named by its form, and output.tar is the tar inside; a corrupt file ends the stream with an error', async () => {
    expect(resultFileName('hello_2.10-3')).toBe('hello_2.10-3.img.xz');
    expect(resultFileName('hello_2.10-3', 'output')).toBe('hello_2.10-3.output.tar.xz');
    const dir = await tmp();
    await mkdir(path.join(dir, 'output'));
    await writeFile(path.join(dir, 'output', 'hello.deb'), 'not really a deb\n');
    const file = path.join(dir, 'r.output.tar.xz');
    execFileSync('tar', ['-C', dir, '-cJf', file, 'output']);
    const t = await resultOutputTar(file, 'output', 1 << 30);
    const chunks: Buffer[] = [];
    for await (const c of t.stream) chunks.push(c as Buffer);
    await t.cleanup();
    const listed = execFileSync('tar', ['-t'], { input: Buffer.concat(chunks) }).toString();
    expect(listed.split('\n').filter(Boolean).sort()).toEqual(['output/', 'output/hello.deb']);
    const bad = path.join(dir, 'bad.output.tar.xz');
    await writeFile(bad, Buffer.concat([(await readFile(file)).subarray(0, 40), Buffer.alloc(200, 7)]));
    const b = await resultOutputTar(bad, 'output', 1 << 30);
    await expect((async () => { for await (const _ of b.stream) { /* drain */ } })()).rejects.toThrow(/xz -d of bad\.output\.tar\.xz failed/);
    await b.cleanup();
    // A result that is gone is refused before any stream (the route's 404, not a reset after a 200).
    await expect(resultOutputTar(path.join(dir, 'gone.output.tar.xz'), 'output', 1 << 30)).rejects.toThrow(/JR_E_NOT_FOUND|cannot be read \(ENOENT\)/);
  });
});
