// Attacks on the HTTP API against the real service: path traversal in the job name and the id,
// huge headers, a stalled (slow-drip) body, bad and forged tokens, a flood of oversize uploads,
// a file planted in queue/ with an upload's name. Ledger: jobs lost 0, host files modified 0,
// processes left 0 (no job runs here: every attack must be refused before one could).
import { createHash } from 'node:crypto';
import { readdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HAVE_BASE, makeJob, qemuProcessesFor, scratch } from '../helpers.js';
import { addToken, queueLeftovers, rawRequest, startApiService, upload, uploadRecords, waitFor, type ApiService } from '../http-lib.js';

const sha = async (f: string): Promise<string> => createHash('sha256').update(await readFile(f)).digest('hex');

describe.skipIf(!HAVE_BASE)('HTTP API under attack (real service)', () => {
  let svc: ApiService;
  let token: string;
  let sentinel: string;
  let sentinelHash: string;
  let rootBefore: string[];
  let image: string;
  const ledger = { jobsLost: 0, hostFilesModified: 0, processesLeft: 0 };

  beforeAll(async () => {
    const work = await scratch('adv-http');
    sentinel = path.join(work, 'secret.txt');
    await writeFile(sentinel, 'host secret\n');
    sentinelHash = await sha(sentinel);
    image = await makeJob(work, 'ok', 'echo hi', '8M');
    // Nothing in these cases boots a VM: every upload that gets through is xz-framed noise.
    svc = await startApiService('adv-http-svc', ['--http-idle-timeout', '3s', '--rescan-interval', '10m']);
    token = await addToken(svc, 'attacker', ['--max-image-size', '64M']);
    rootBefore = (await readdir(svc.root)).sort();
  });
  afterAll(async () => {
    if (await sha(sentinel) !== sentinelHash) ledger.hostFilesModified++;
    const extra = (await readdir(svc.root)).sort().filter((f) => !rootBefore.includes(f));
    ledger.hostFilesModified += extra.length;
    expect(await svc.stop(), svc.output()).toBe(0);
    ledger.processesLeft = (await qemuProcessesFor(svc.root)).length;
    console.log(`HTTP adversarial ledger: jobs lost ${ledger.jobsLost}, host files modified ${ledger.hostFilesModified}, processes left ${ledger.processesLeft}`);
    expect(ledger).toEqual({ jobsLost: 0, hostFilesModified: 0, processesLeft: 0 });
  });

  it('refuses traversal and odd names in ?name= (400) and writes nothing', async () => {
    const names = ['../../secret.txt', '..', '.hidden', '-rf', 'a/b', 'a\\b', 'x'.repeat(101), '', 'a\u0000b', 'a\nb', 'évil', `..%2f..%2f${path.basename(sentinel)}`];
    for (const n of names) {
      const r = await upload(svc, image, n, token);
      expect(r.status, n).toBe(400);
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe('JR_E_REQUEST');
    }
    const raw = await rawRequest(svc.port, [`POST /api/v1/jobs?name=..%2F..%2Fsecret HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/octet-stream\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabcd`]);
    expect(raw).toMatch(/^HTTP\/1.1 400/);
    expect(await queueLeftovers(svc)).toEqual([]);
  });

  it('refuses traversal in the job id on every route', async () => {
    const ids = ['..%2F..%2Fetc%2Fpasswd', '..', '%2e%2e', 'mx7cchim-5d02070', 'MX7CCHIM-5D020704', 'a'.repeat(200), '../../../etc/passwd'];
    for (const id of ids) {
      for (const suffix of ['', '/log', '/log?follow=1', '/result', '/output.tar']) {
        const r = await fetch(`${svc.url}/api/v1/jobs/${id}${suffix}`);
        expect([400, 404, 414], `${id}${suffix}`).toContain(r.status); // 414: over the path parameter limit
        const body = await r.text();
        expect(body).not.toContain('root:');
        expect(JSON.parse(body)).toHaveProperty('error.code');
      }
      const d = await fetch(`${svc.url}/api/v1/jobs/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
      expect([400, 404, 414]).toContain(d.status);
    }
    // A well-formed id that does not exist.
    expect((await fetch(`${svc.url}/api/v1/jobs/mx7cchim-5d020704/log`)).status).toBe(404);
  });

  it('answers huge headers with 431 and keeps serving', async () => {
    const reply = await rawRequest(svc.port, [`GET /api/v1/jobs HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(100_000)}\r\n\r\n`], { endAfterMs: 5000 });
    expect(reply).toMatch(/^HTTP\/1.1 431/);
    expect((await fetch(`${svc.url}/api/v1/jobs`)).status).toBe(200);
  });

  it('closes a stalled upload after --http-idle-timeout and leaves nothing', async () => {
    const t = Date.now();
    const head = `POST /api/v1/jobs?name=slow HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/octet-stream\r\nContent-Length: 8000000\r\n\r\n`;
    await rawRequest(svc.port, [head, Buffer.alloc(1000, 7)], { endAfterMs: 30_000 });
    expect(Date.now() - t).toBeLessThan(15_000); // the server hung up (idle 3 s), not our 30 s guard
    await new Promise((r) => setTimeout(r, 300));
    expect(await queueLeftovers(svc)).toEqual([]);
    expect((await readdir(svc.queue)).filter((f) => f.startsWith('.upload-'))).toEqual([]);
    expect(await uploadRecords(svc)).toEqual([]);
  });

  it('refuses bad, malformed, forged and revoked tokens with 401', async () => {
    const bads = ['Bearer ', 'Bearer jr_' + 'A'.repeat(43), 'Basic YWxpY2U6cHc=', `Bearer ${token} extra`, `bearer ${token}`, `Bearer ${'x'.repeat(5000)}`, `Bearer ${token.slice(0, -1)}`];
    const rs = await Promise.all(bads.map((h) => fetch(`${svc.url}/api/v1/jobs?name=x`, { method: 'POST', body: 'x', headers: { authorization: h, 'content-type': 'application/octet-stream' } })));
    for (const [i, r] of rs.entries()) {
      expect(r.status, bads[i]!.slice(0, 40)).toBe(401);
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe('JR_E_AUTH');
    }
    const other = await addToken(svc, 'shortlived');
    expect((await fetch(`${svc.url}/api/v1/jobs/mx7cchim-5d020704`, { method: 'DELETE', headers: { authorization: `Bearer ${other}` } })).status).toBe(404);
    const { jobrunner } = await import('../helpers.js');
    expect((await jobrunner(['token', 'revoke', 'shortlived'], { env: svc.env })).code).toBe(0);
    expect((await upload(svc, image, 'afterrevoke', other)).status).toBe(401);
    // Reading with a bad token is refused too, even on loopback where reads are open.
    expect((await fetch(`${svc.url}/api/v1/jobs`, { headers: { authorization: 'Bearer nope' } })).status).toBe(401);
  });

  it('a flood of oversize declared uploads is refused fast, all of them', async () => {
    const t = Date.now();
    const replies = await Promise.all(Array.from({ length: 40 }, () => rawRequest(svc.port,
      [`POST /api/v1/jobs?name=flood HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/octet-stream\r\nContent-Length: ${10 * 1024 ** 3}\r\nConnection: close\r\n\r\n`], { endAfterMs: 8000 })));
    expect(replies.every((r) => r.startsWith('HTTP/1.1 413'))).toBe(true);
    expect(Date.now() - t).toBeLessThan(10_000);
    expect(await queueLeftovers(svc)).toEqual([]);
  });

  it('a file planted under an upload\'s queue name never carries that upload\'s id', async () => {
    // Both are xz-framed noise: whichever gets claimed is rejected at once (no VM), with its sha256.
    const xz = (n: number): Buffer => Buffer.concat([Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), Buffer.alloc(100_000, n)]);
    const genuine = xz(1); const planted = xz(2);
    const r = await fetch(`${svc.url}/api/v1/jobs?name=real`, { method: 'POST', body: new Uint8Array(genuine), headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' } });
    expect(r.status).toBe(201);
    const { id } = (await r.json()) as { id: string };
    // Replace the queued upload by other bytes under the same name (anyone who can write queue/
    // can do this); whether the service claimed the genuine file first or not, the planted one
    // must end as a job of its own, with another id and no owner.
    const tmp = path.join(svc.root, 'planted.tmp');
    await writeFile(tmp, planted);
    await rename(tmp, path.join(svc.queue, `real~${id}.img.xz`));
    const plantedSha = createHash('sha256').update(planted).digest('hex');
    const st = await waitFor('the planted file to be published', async () => {
      for (const f of await readdir(svc.failed)) {
        if (!f.endsWith('.json')) continue;
        const j = JSON.parse(await readFile(path.join(svc.failed, f), 'utf8')) as { id: string; input: { sha256: string | null } };
        if (j.input.sha256 === plantedSha) return j;
      }
      return null;
    }, 60_000);
    expect(st.id).not.toBe(id);
    const view = (await (await fetch(`${svc.url}/api/v1/jobs/${st.id}`)).json()) as { owner: string | null };
    expect(view.owner).toBeNull();
  });
});
