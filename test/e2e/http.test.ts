// The HTTP API end to end with the real service and real qemu: tokens, upload, live log over SSE
// with Last-Event-ID resume, final status on the stream, output.tar, limits (401/403/413/429),
// a cut-off upload, and cancel of a queued and of a running job.
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobStatus } from '../../src/spool/record.js';
import { HAVE_BASE, jobTree, jobrunner, makeJob, qemuProcessesFor, scratch } from '../helpers.js';
import { addToken, queueLeftovers, rawRequest, readSse, startApiService, upload, uploadRecords, waitFor, type ApiService } from '../http-lib.js';

interface JobJson {
  id: string; state: string; status: string | null; owner: string | null; position: number | null;
  heartbeat: { cpuSeconds: number } | null; urls: Record<string, string>;
}

const getJob = async (svc: ApiService, id: string): Promise<JobJson> => (await (await fetch(`${svc.url}/api/v1/jobs/${id}`)).json()) as JobJson;

describe.skipIf(!HAVE_BASE)('HTTP API (real service, real qemu)', () => {
  let work: string;
  let svc: ApiService;
  let alice: string;
  let bob: string;
  let jobs: Record<string, string>;

  beforeAll(async () => {
    work = await scratch('http-jobs');
    jobs = {
      chatty: await makeJob(work, 'chatty', 'for i in $(seq 1 40); do echo "line $i of the chatty job"; sleep 0.2; done\necho "<script>alert(1)</script>"\nmkdir -p /job/output\necho 42 > /job/output/answer', '16M'),
      sleepy: await makeJob(work, 'sleepy', 'echo sleeping now\nwhile true; do sleep 1; done', '16M'),
    };
    svc = await startApiService('http-api', ['--concurrency', '1', '--timeout', '10m', '--kill-grace', '3s']);
    alice = await addToken(svc, 'alice', ['--max-active', '2']);
    bob = await addToken(svc, 'bob');
  });
  afterAll(async () => {
    const code = await svc?.stop();
    expect(code, svc?.output()).toBe(0);
    expect(await qemuProcessesFor(svc.root)).toEqual([]);
  });

  it('refuses without a token (401), with a bad one (401), and an oversize declared body before reading it (413)', async () => {
    const none = await upload(svc, jobs.chatty!, 'x', null);
    expect(none.status).toBe(401);
    expect(((await none.json()) as { error: { code: string } }).error.code).toBe('JR_E_AUTH');
    const bad = await upload(svc, jobs.chatty!, 'x', 'jr_not-a-real-token');
    expect(bad.status).toBe(401);
    const small = await addToken(svc, 'small', ['--max-image-size', '1M']);
    // Declares 17 MB and sends nothing: the answer must come before any body byte.
    const reply = await rawRequest(svc.port, [`POST /api/v1/jobs?name=big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${small}\r\nContent-Type: application/octet-stream\r\nContent-Length: 17000000\r\n\r\n`], { endAfterMs: 3000 });
    expect(reply).toMatch(/^HTTP\/1.1 413/);
    expect(reply).toContain('JR_E_TOO_LARGE');
    expect(await queueLeftovers(svc)).toEqual([]);
    expect(await uploadRecords(svc)).toEqual([]);
  });

  it('a body cut off mid-upload leaves no file', async () => {
    const head = `POST /api/v1/jobs?name=cut HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${bob}\r\nContent-Type: application/octet-stream\r\nContent-Length: 8000000\r\n\r\n`;
    await rawRequest(svc.port, [head, Buffer.alloc(2_000_000, 1)], { destroyAfterWrite: true });
    await new Promise((r) => setTimeout(r, 500));
    expect(await queueLeftovers(svc)).toEqual([]);
    expect((await readdir(svc.queue)).filter((f) => f.startsWith('.upload-'))).toEqual([]);
    expect(await uploadRecords(svc)).toEqual([]);
  });

  it('submit → follow live → resume with Last-Event-ID → final status on the stream → output.tar; queued cancel; 403 and 429', async () => {
    const r = await upload(svc, jobs.chatty!, 'chatty', alice);
    expect(r.status).toBe(201);
    const sub = (await r.json()) as { id: string; urls: Record<string, string> };
    expect(sub.id).toMatch(/^[0-9a-z]+-[0-9a-f]{8}$/);

    // A second job of alice waits behind it (concurrency 1); a third is over --max-active 2.
    const second = (await (await upload(svc, jobs.sleepy!, 'waiting', alice)).json()) as { id: string };
    const third = await upload(svc, jobs.sleepy!, 'third', alice);
    expect(third.status).toBe(429);
    expect(Number(third.headers.get('retry-after'))).toBeGreaterThan(0);

    // Follow the first job: take some lines live, drop the connection, resume from the last id.
    const first = await readSse(svc, sub.urls.follow!, (_ev, all) => all.filter((e) => e.data.includes('of the chatty job')).length >= 5);
    const live = first.filter((e) => e.event === 'message');
    const running = await getJob(svc, sub.id);
    expect(running.state).toBe('running');
    expect(running.owner).toBe('alice');
    expect(running.heartbeat!.cpuSeconds).toBeGreaterThan(0);
    const lastId = live.at(-1)!.id!;
    const rest = await readSse(svc, sub.urls.follow!, (ev) => ev.event === 'end', lastId);
    const end = rest.at(-1)!;
    expect(end.event).toBe('end');
    const final = JSON.parse(end.data) as JobStatus;
    expect(final).toMatchObject({ id: sub.id, status: 'succeeded', exitCode: 0 });

    // Nothing lost, nothing repeated: the two halves are the published log, line by line.
    const text = await (await fetch(`${svc.url}${sub.urls.log}`)).text();
    const lines = text.split('\n');
    if (lines.at(-1) === '') lines.pop();
    const streamed = [...live, ...rest.filter((e) => e.event === 'message')].map((e) => e.data);
    expect(streamed).toEqual(lines.map((l) => l.replace(/[\x00-\x08\x0a-\x1f\x7f]/g, '')));
    for (let i = 1; i <= 40; i++) expect(streamed.filter((l) => l.endsWith(`line ${i} of the chatty job`))).toHaveLength(1);
    expect(Number(end.id)).toBe(Buffer.byteLength(text));

    // The id given at upload is the one the status and the log carry.
    const published = JSON.parse(await readFile(path.join(svc.done, 'chatty.json'), 'utf8')) as JobStatus;
    expect(published.id).toBe(sub.id);
    // ... and the service's own log lines about the job (uploaded, started, succeeded).
    const about = svc.output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { msg: string; id?: string; name?: string })
      .filter((l) => l.name === 'chatty' && ['job uploaded', 'job started', 'job succeeded'].includes(l.msg));
    expect(about.map((l) => l.msg).sort()).toEqual(['job started', 'job succeeded', 'job uploaded']);
    expect(about.every((l) => l.id === sub.id)).toBe(true);

    // Range on the log and the result.
    const part = await fetch(`${svc.url}${sub.urls.log}`, { headers: { range: 'bytes=0-9' } });
    expect(part.status).toBe(206);
    expect(await part.text()).toBe(text.slice(0, 10));
    const res = await fetch(`${svc.url}${sub.urls.result}`);
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).subarray(0, 6)).toEqual(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]));

    const tar = Buffer.from(await (await fetch(`${svc.url}${sub.urls.outputTar}`)).arrayBuffer());
    const out = await mkdtemp(path.join(os.tmpdir(), 'jr-http-tar-'));
    execFileSync('tar', ['-xf', '-', '-C', out], { input: tar });
    expect(await readFile(path.join(out, 'output', 'answer'), 'utf8')).toBe('42\n');

    // The second job is queued or has just started; bob may not cancel it, alice may.
    const del = await fetch(`${svc.url}/api/v1/jobs/${second.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${bob}` } });
    expect(del.status).toBe(403);
    expect(((await del.json()) as { error: { code: string } }).error.code).toBe('JR_E_FORBIDDEN');
    const ok = await fetch(`${svc.url}/api/v1/jobs/${second.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${alice}` } });
    expect(ok.status, await ok.clone().text()).toBe(200);
    const cancelled = JSON.parse(await readFile(path.join(svc.failed, 'waiting.json'), 'utf8')) as JobStatus;
    expect(cancelled).toMatchObject({ id: second.id, status: 'cancelled' });
    expect(await readFile(path.join(svc.failed, 'waiting.log'), 'utf8')).toMatch(/cancelled/);
    expect((await readdir(svc.done)).filter((f) => f.startsWith('waiting'))).toEqual([]);
    expect(await queueLeftovers(svc)).toEqual([]);
  });

  it('cancel of a queued job and of a running job: cancelled, no qemu left, nothing in done/', async () => {
    const run = (await (await upload(svc, jobs.sleepy!, 'sleeper', bob)).json()) as { id: string };
    await waitFor('the sleeper to run', async () => (await getJob(svc, run.id)).state === 'running', 240_000);
    // Queued behind it (concurrency 1).
    const q = (await (await upload(svc, jobs.sleepy!, 'queued', bob)).json()) as { id: string };
    const view = await getJob(svc, q.id);
    expect(view.state).toBe('queued');
    expect(view.position).toBe(1);
    const dq = await fetch(`${svc.url}/api/v1/jobs/${q.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${bob}` } });
    expect(dq.status, await dq.clone().text()).toBe(200);
    expect(((await dq.json()) as JobJson).status).toBe('cancelled');
    // Let the sleeper reach its loop (its console says so), then cancel it.
    await waitFor('the sleeper to print', async () => (await (await fetch(`${svc.url}/api/v1/jobs/${run.id}/log`)).text()).includes('sleeping now'), 240_000);
    const t = Date.now();
    const dr = await fetch(`${svc.url}/api/v1/jobs/${run.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${bob}` } });
    expect(dr.status, await dr.clone().text()).toBe(200);
    expect(Date.now() - t).toBeLessThan(60_000);
    const st = JSON.parse(await readFile(path.join(svc.failed, 'sleeper.json'), 'utf8')) as JobStatus;
    expect(st).toMatchObject({ id: run.id, status: 'cancelled', exitCode: null });
    expect(await readFile(path.join(svc.failed, 'sleeper.log'), 'utf8')).toContain('sleeping now');
    expect(await qemuProcessesFor(svc.root)).toEqual([]);
    expect((await readdir(svc.done)).filter((f) => f.startsWith('sleeper') || f.startsWith('queued'))).toEqual([]);
    expect(await readdir(path.join(svc.queue, '.running'))).toEqual([]);
    // A finished job cannot be cancelled again.
    const again = await fetch(`${svc.url}/api/v1/jobs/${run.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${bob}` } });
    expect(again.status).toBe(409);
    expect((await stat(path.join(svc.failed, 'queued.json'))).isFile()).toBe(true);
  });

  it('jobrunner submit DIR --server --follow --wait -o: packages, uploads, streams, exits with the job\'s code, extracts /job/output', async () => {
    const tree = await jobTree(path.join(work, 'cli.tree'), 'echo "from the submit CLI"\nmkdir -p /job/output\necho 42 > /job/output/answer\nexit 3');
    const out = path.join(work, 'cli.out');
    const r = await jobrunner(['submit', tree, '--server', svc.url, '--name', 'cli', '--follow', '--wait', '-o', out], { env: { ...svc.env, JOBRUNNER_TOKEN: bob }, timeoutMs: 600_000 });
    expect(r.code, r.stderr).toBe(3);
    expect(r.stdout).toContain('from the submit CLI');
    expect(r.stderr).toMatch(/submitted cli as job [0-9a-z]+-[0-9a-f]{8}/);
    expect(await readFile(path.join(out, 'output', 'answer'), 'utf8')).toBe('42\n');
    const st = JSON.parse(await readFile(path.join(svc.failed, 'cli.json'), 'utf8')) as JobStatus;
    expect(st).toMatchObject({ status: 'failed', exitCode: 3 });
    // A 1 GiB-class sparse image went up compressed: the upload was small.
    expect(st.input.bytes!).toBeLessThan(1 << 20);
  });
});
