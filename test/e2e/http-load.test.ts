// A bounded load test on loopback against the real service: 50 concurrent uploaders and 200 log
// followers. Every accepted upload must end in done/ or failed/ (none lost), every follower must
// get its job's final status, and the service's RSS must stay under 200 MB throughout.
// The uploads are xz-framed junk (accepted by the API, rejected by the service when it decompresses
// them), so the test measures the API and the spool, not 50 VM boots.
import { randomBytes } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HAVE_BASE, scratch } from '../helpers.js';
import { addToken, readSse, startApiService, type ApiService } from '../http-lib.js';

const UPLOADERS = 50;
const FOLLOWERS = 200;
const RSS_LIMIT = 200 * 1024 * 1024;

async function rssOf(pid: number): Promise<number> {
  const s = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const m = /^VmRSS:\s+(\d+) kB/m.exec(s);
  return m ? Number(m[1]) * 1024 : 0;
}

describe.skipIf(!HAVE_BASE)('HTTP load: 50 uploaders, 200 followers (real service)', () => {
  let svc: ApiService | null = null;
  afterAll(async () => { if (svc) expect(await svc.stop(), svc.output()).toBe(0); });

  it('loses no upload, ends every follower with the final status, stays under 200 MB RSS', async () => {
    const work = await scratch('http-load');
    svc = await startApiService('http-load-svc', ['--concurrency', '2', '--log-level', 'info']);
    const s = svc;
    const token = await addToken(s, 'load');
    // 2 MiB each: xz magic, then noise (the decoder refuses it: a `rejected` result, no VM).
    const body = Buffer.concat([Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), randomBytes(2 * 1024 * 1024)]);
    const file = path.join(work, 'junk.img.xz');
    await writeFile(file, body);

    let peak = 0;
    const sampler = setInterval(() => { void rssOf(s.child.pid!).then((r) => { peak = Math.max(peak, r); }); }, 100);
    const t0 = Date.now();
    try {
      const ids: string[] = [];
      // Each uploader starts its share of followers the moment its upload is accepted, while the
      // other uploads are still streaming in.
      const followers: Array<Promise<string>> = [];
      const results = await Promise.all(Array.from({ length: UPLOADERS }, async (_, i) => {
        const r = await fetch(`${s.url}/api/v1/jobs?name=load-${i}`, { method: 'POST', body, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' } });
        if (r.status !== 201) return r.status;
        const { id } = (await r.json()) as { id: string };
        ids.push(id);
        for (let k = 0; k < FOLLOWERS / UPLOADERS; k++) {
          followers.push(readSse(s, `/api/v1/jobs/${id}/log?follow=1`, (ev) => ev.event === 'end')
            .then((evs) => { const e = evs.at(-1); return e?.event === 'end' ? (JSON.parse(e.data) as { status: string }).status : 'none'; }));
        }
        return r.status;
      }));
      expect(results.filter((c) => c !== 201), 'every upload accepted').toEqual([]);
      const finals = await Promise.all(followers);
      expect(finals).toHaveLength(FOLLOWERS);
      expect(finals.filter((f) => f === 'none'), 'followers without a final status').toEqual([]);
      // Every accepted upload is in done/ or failed/ with its id.
      const published = new Set<string>();
      for (const d of [s.done, s.failed]) {
        for (const f of await readdir(d)) {
          if (f.endsWith('.json')) published.add((JSON.parse(await readFile(path.join(d, f), 'utf8')) as { id: string }).id);
        }
      }
      expect(ids.filter((id) => !published.has(id)), 'uploads lost').toEqual([]);
      // Listing under the same service after the storm.
      const list = (await (await fetch(`${s.url}/api/v1/jobs?state=finished&limit=500`)).json()) as { total: number };
      expect(list.total).toBe(UPLOADERS);
      // /metrics saw the same storm.
      const m = await (await fetch(`${s.url}/metrics`)).text();
      const val = (re: RegExp): number => Number(re.exec(m)?.[1] ?? NaN);
      expect(val(/^jobrunner_results\{status="rejected"\} (\d+)$/m)).toBe(UPLOADERS);
      expect(val(/^jobrunner_jobs_finished_total\{status="rejected"\} (\d+)$/m)).toBe(UPLOADERS);
      expect(val(/^jobrunner_upload_bytes_total (\d+)$/m)).toBe(UPLOADERS * body.length);
      expect(val(/^jobrunner_http_requests_total\{route="\/api\/v1\/jobs",method="POST",code="201"\} (\d+)$/m)).toBe(UPLOADERS);
      expect(val(/^jobrunner_jobs\{state="queued"\} (\d+)$/m)).toBe(0);
      expect(val(/^jobrunner_concurrency_limit (\d+)$/m)).toBe(2);
      expect(val(/^jobrunner_accelerator\{accel="tcg"\} (\d+)$/m) + val(/^jobrunner_accelerator\{accel="kvm"\} (\d+)$/m)).toBe(1);
      expect(m).toMatch(/^jobrunner_job_wait_seconds_count \d+$/m);
    } finally {
      clearInterval(sampler);
    }
    console.log(`load: ${UPLOADERS} uploads + ${FOLLOWERS} followers in ${((Date.now() - t0) / 1000).toFixed(1)} s; service peak RSS ${(peak / 1024 / 1024).toFixed(1)} MB`);
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThan(RSS_LIMIT);
  });
});
