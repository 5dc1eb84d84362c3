// Benchmark of the HTTP API against the real service (no VM runs: --settle 1h keeps uploads queued).
//   (1) upload of a dense image (default 1 GiB) vs `cp` + fsync into the queue    goal: ratio >= 0.7
//       (plain `cp` printed too: it leaves its bytes in the page cache, the upload does not)
//       (also vs `cat | dd conv=fsync`: the same bytes through user space, as any upload must go)
//   (2) a console line's latency from the console file to a following SSE client,
//       against an in-process fs.watch tail of the same file (the local floor)     goal: median < 300 ms
//   (3) GET /api/v1/jobs with 10,000 finished jobs in done/                        goal: p99 < 50 ms
//   (4) GET /metrics                                                                 goal: p99 < 20 ms
//   (3) and (4) are also shown against GET /style.css (the framework's floor), in the same run.
// Usage: bench/api [--size 1G] [--finished 10000] [--requests 300] [--repeat 3] [--keep]
import { execFileSync, spawn } from 'node:child_process';
import { appendFileSync, closeSync, createReadStream, fsyncSync, mkdirSync, openSync, readdirSync, readSync, rmSync, statSync, watch, writeFileSync, writeSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { parseSize } from '../src/units.js';
import { ROOT, median, scratchDir } from './lib.js';

const { values: o } = parseArgs({ options: {
  size: { type: 'string', default: '1G' }, finished: { type: 'string', default: '10000' }, requests: { type: 'string', default: '300' },
  repeat: { type: 'string', default: '3' }, keep: { type: 'boolean' },
} });
const SIZE = parseSize(o.size) ?? NaN; const FINISHED = Number(o.finished); const REQUESTS = Number(o.requests); const REPEAT = Number(o.repeat);
const pct = (xs: number[], p: number): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!; };
const ms = (x: number): string => `${x.toFixed(1)} ms`;

const work = scratchDir('api');
const root = path.join(work, 'spool');
const queue = path.join(root, 'queue'); const done = path.join(root, 'done'); const failed = path.join(root, 'failed');
for (const d of [queue, done, failed]) mkdirSync(d, { recursive: true });
writeFileSync(path.join(root, 'config.json'), '{}');
const env = { ...process.env, JOBRUNNER_CONFIG: path.join(root, 'config.json') };

// 10,000 finished jobs, as the service publishes them.
const t0 = Date.now();
for (let i = 0; i < FINISHED; i++) {
  const id = `${(1_700_000_000_000 + i).toString(36)}-${i.toString(16).padStart(8, '0')}`;
  const at = new Date(1_700_000_000_000 + i * 1000).toISOString();
  writeFileSync(path.join(done, `job-${i}.json`), JSON.stringify({
    name: `job-${i}`, id, status: 'succeeded', exitCode: 0, reason: 'the job succeeded', submitted: `job-${i}.img`, publishedAs: `job-${i}`,
    attempt: 1, submittedAt: at, startedAt: at, finishedAt: at, durations: { wait: 0.1, boot: 10, run: 5, compress: 1 },
    input: { bytes: 1024, sha256: 'x' }, output: { bytes: 100, sha256: 'y', preset: 1 }, baseImage: null, accel: 'tcg',
    console: { bytes: 10, truncated: false, lastLine: 'done' }, version: 'bench',
  }));
}
console.log(`setup: ${FINISHED} finished jobs written in ${Date.now() - t0} ms`);

const token = execFileSync(path.join(ROOT, 'jobrunner'), ['token', 'add', 'bench'], { env }).toString().trim();
const port = await new Promise<number>((r) => { const s = net.createServer(); s.listen(0, '127.0.0.1', () => { const p = (s.address() as net.AddressInfo).port; s.close(() => r(p)); }); });
const svc = spawn(path.join(ROOT, 'jobrunner'), ['--queue', queue, '--done', done, '--failed', failed, '--listen', `127.0.0.1:${port}`,
  '--settle', '1h', '--rescan-interval', '1h', '--log-level', 'warn', '--disk-reserve', '1M'], { env, stdio: ['ignore', 'inherit', 'inherit'] });
const url = `http://127.0.0.1:${port}`;
for (let i = 0; ; i++) {
  if (await fetch(`${url}/api/v1/machine`).then((r) => r.ok, () => false)) break;
  if (i > 600) throw new Error('service did not start');
  await new Promise((r) => setTimeout(r, 100));
}
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const get = (p: string, headers: Record<string, string> = {}): Promise<number> => new Promise((resolve, reject) => {
  const t = performance.now();
  http.get(`${url}${p}`, { agent, headers }, (res) => { res.resume(); res.on('end', () => resolve(performance.now() - t)); }).on('error', reject);
});

try {
  // (1) upload vs cp.
  const img = path.join(work, 'dense.img');
  execFileSync('dd', ['if=/dev/urandom', `of=${img}`, 'bs=1M', `count=${Math.ceil(SIZE / (1 << 20))}`, 'status=none']);
  // xz magic: the API accepts it, and the service, if it claims one before it is cleaned up,
  // rejects it at once when decompressing (an ext magic would boot a VM on noise).
  const fd = openSync(img, 'r+'); writeSync(fd, Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), 0, 6, 0); closeSync(fd);
  const bytes = statSync(img).size;
  const cpOnly: number[] = []; const cpTimes: number[] = []; const upTimes: number[] = []; const nodeTimes: number[] = []; const pipeTimes: number[] = [];
  const clean = (): void => {
    for (const d of [queue, failed]) for (const f2 of readdirSync(d)) if (/^(dense|node)-/.test(f2)) rmSync(path.join(d, f2), { force: true });
  };
  for (let r = 0; r < REPEAT; r++) {
    const dst = path.join(queue, `.cp-${r}.part`);
    let t = performance.now();
    execFileSync('cp', [img, dst]);
    cpOnly.push(performance.now() - t); // cp alone: its bytes may still be only in the page cache
    const f = openSync(dst, 'r'); fsyncSync(f); closeSync(f); // the upload fsyncs before its 201: so must the baseline
    cpTimes.push(performance.now() - t);
    rmSync(dst);
    // A second floor: the same bytes through user space and a pipe (what any upload must do;
    // cp copies inside the kernel, copy_file_range).
    t = performance.now();
    execFileSync('sh', ['-c', 'cat "$1" | dd of="$2" bs=1M iflag=fullblock conv=fsync status=none', 'sh', img, dst]);
    pipeTimes.push(performance.now() - t);
    rmSync(dst);
    // The client of record is curl (what docs/API.md shows): a Node client on the same 2 cores
    // competes with the server for CPU, so it is timed too, separately.
    t = performance.now();
    const code = execFileSync('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '-X', 'POST', '-H', `Authorization: Bearer ${token}`,
      '-H', 'Content-Type: application/octet-stream', '-H', 'Expect:', '-T', img, `${url}/api/v1/jobs?name=dense-${r}`]).toString();
    upTimes.push(performance.now() - t);
    if (code !== '201') throw new Error(`curl upload answered ${code}`);
    clean();
    t = performance.now();
    const status = await new Promise<number | undefined>((resolve, reject) => {
      const req = http.request(`${url}/api/v1/jobs?name=node-${r}`, { method: 'POST', agent: false /* the global agent's 5 s socket timeout is shorter than the server's final fsync */, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream', 'content-length': bytes } });
      req.on('response', (res) => { res.resume(); res.on('end', () => resolve(res.statusCode)); });
      req.on('error', (e) => reject(new Error(`Node client upload: ${e.message}`)));
      createReadStream(img, { highWaterMark: 1 << 20 }).pipe(req);
    });
    nodeTimes.push(performance.now() - t);
    if (status !== 201) throw new Error(`upload answered ${status}`);
    clean();
  }
  const cpOnlyMs = median(cpOnly); const cpMs = median(cpTimes); const upMs = median(upTimes); const nodeMs = median(nodeTimes); const pipeMs = median(pipeTimes);
  const mbs = (t: number): string => `${(bytes / t / 1e3).toFixed(0)} MB/s`;
  console.log(`(1) upload ${(bytes / 2 ** 30).toFixed(2)} GiB dense, medians of ${REPEAT} (the upload is fsynced before its 201):`);
  console.log(`    cp ${ms(cpOnlyMs)} (${mbs(cpOnlyMs)}); cp+fsync ${ms(cpMs)} (${mbs(cpMs)}); cat|dd conv=fsync through a pipe ${ms(pipeMs)} (${mbs(pipeMs)})`);
  console.log(`    curl upload ${ms(upMs)} (${mbs(upMs)}): ratio vs cp+fsync ${(cpMs / upMs).toFixed(2)} (goal >= 0.7), vs cp ${(cpOnlyMs / upMs).toFixed(2)}, vs the pipe ${(pipeMs / upMs).toFixed(2)}`);
  console.log(`    Node client upload ${ms(nodeMs)} (${mbs(nodeMs)}): ratio vs cp+fsync ${(cpMs / nodeMs).toFixed(2)}, vs cp ${(cpOnlyMs / nodeMs).toFixed(2)}, vs the pipe ${(pipeMs / nodeMs).toFixed(2)}`);
  rmSync(img);

  // (2) console line latency. A claim directory as the service makes it, with a console log that
  // this bench appends to (standing in for qemu's console writer).
  const id = 'zzzzzzzz-00000001';
  const dir = path.join(queue, '.running', id);
  mkdirSync(dir);
  const now = new Date().toISOString();
  writeFileSync(path.join(dir, 'lease.json'), JSON.stringify({ id, name: 'latency', submitted: 'latency.img', base: null, compressed: false, attempt: 1, servicePid: svc.pid, qemuPid: null, submittedAt: now, claimedAt: now, startedAt: now }));
  const log = path.join(dir, 'console.log');
  writeFileSync(log, '');
  const sent = new Map<string, number>(); const apiLat: number[] = []; const localLat: number[] = [];
  let localPos = 0; let localBuf = '';
  const watcher = watch(log, () => {
    const fd2 = openSync(log, 'r'); const st = statSync(log); const b = Buffer.alloc(st.size - localPos);
    readSync(fd2, b, 0, b.length, localPos); closeSync(fd2); localPos = st.size;
    localBuf += b.toString(); let i: number;
    while ((i = localBuf.indexOf('\n')) >= 0) { const l = localBuf.slice(0, i); localBuf = localBuf.slice(i + 1); const t1 = sent.get(l); if (t1 !== undefined) localLat.push(performance.now() - t1); }
  });
  const LINES = 100;
  const gotAll = new Promise<void>((resolve) => {
    http.get(`${url}/api/v1/jobs/${id}/log?follow=1`, (res) => {
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        buf += d; let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i); buf = buf.slice(i + 2);
          const m = /^data: (.*)$/m.exec(block);
          const t1 = m ? sent.get(m[1]!) : undefined;
          if (t1 !== undefined) { apiLat.push(performance.now() - t1); if (apiLat.length === LINES) { res.destroy(); resolve(); } }
        }
      });
    });
  });
  await new Promise((r) => setTimeout(r, 500));
  for (let i = 0; i < LINES; i++) {
    const line = `latency line ${i} ${'x'.repeat(40)}`;
    sent.set(line, performance.now());
    appendFileSync(log, `${line}\n`);
    await new Promise((r) => setTimeout(r, 37)); // not a multiple of the follower's poll
  }
  await gotAll;
  watcher.close();
  rmSync(dir, { recursive: true, force: true });
  console.log(`(2) console line latency: SSE follower median ${ms(median(apiLat))}, p95 ${ms(pct(apiLat, 95))}; local fs.watch tail median ${ms(median(localLat))}; ratio ${(median(apiLat) / Math.max(0.01, median(localLat))).toFixed(1)}x the local floor (goal median < 300 ms)`);

  // (3) and (4).
  for (let i = 0; i < 20; i++) { await get('/api/v1/jobs'); await get('/metrics'); await get('/style.css'); }
  const lists: number[] = []; const metrics: number[] = []; const floor: number[] = [];
  for (let i = 0; i < REQUESTS; i++) {
    lists.push(await get(`/api/v1/jobs?offset=${(i * 50) % FINISHED}`));
    metrics.push(await get('/metrics'));
    floor.push(await get('/style.css'));
  }
  console.log(`(3) GET /api/v1/jobs (${FINISHED} finished): p50 ${ms(pct(lists, 50))}, p99 ${ms(pct(lists, 99))} (goal p99 < 50 ms); static floor p99 ${ms(pct(floor, 99))}; ratio ${(pct(lists, 99) / pct(floor, 99)).toFixed(1)}x`);
  console.log(`(4) GET /metrics: p50 ${ms(pct(metrics, 50))}, p99 ${ms(pct(metrics, 99))} (goal p99 < 20 ms); ratio ${(pct(metrics, 99) / pct(floor, 99)).toFixed(1)}x the floor`);
} finally {
  svc.kill('SIGTERM');
  await new Promise((r) => svc.on('exit', r));
  if (!o.keep) rmSync(work, { recursive: true, force: true });
}
