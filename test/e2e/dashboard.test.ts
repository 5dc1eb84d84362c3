// The dashboard in a real browser: Debian's chromium driven by playwright-core (the system binary,
// nothing downloaded). A job submitted through the API shows as queued, then running with its
// console lines arriving live (once a blocker holding the only VM slot is cancelled), then
// finished with a working download link; a guest printing
// <script>alert(1)</script> shows as text. A screenshot is saved in the test's temp dir.
import { existsSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';
import { HAVE_BASE, makeJob, scratch } from '../helpers.js';
import { addToken, startApiService, upload, type ApiService } from '../http-lib.js';

const CHROMIUM = '/usr/bin/chromium';

describe.skipIf(!HAVE_BASE || !existsSync(CHROMIUM))('dashboard in chromium (real service, real qemu)', () => {
  let svc: ApiService | null = null;
  let browser: BrowserContext | null = null;
  afterAll(async () => {
    await browser?.close();
    if (svc) expect(await svc.stop(), svc.output()).toBe(0);
  });

  it('shows a job queued, running with live console lines, finished with a working download; console text stays text', async () => {
    const work = await scratch('dash');
    const script = 'for i in $(seq 1 30); do echo "tick $i"; sleep 0.5; done\necho "<script>alert(1)</script>"\nmkdir -p /job/output\necho 42 > /job/output/answer';
    const job = await makeJob(work, 'xss', script, '16M');
    const blocker = await makeJob(work, 'blocker', 'while true; do sleep 1; done', '16M');
    svc = await startApiService('dash-svc', ['--concurrency', '1', '--timeout', '10m', '--kill-grace', '2s']);
    const token = await addToken(svc, 'web');
    const profile = await mkdtemp(path.join(os.tmpdir(), 'jr-chromium-'));
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM, headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const page = browser.pages()[0] ?? await browser.newPage();
    const dialogs: string[] = [];
    page.on('dialog', (d) => { dialogs.push(d.message()); void d.dismiss(); });
    const resp = await page.goto(svc.url + '/');
    expect(resp!.headers()['content-security-policy']).toMatch(/default-src 'none'; script-src 'self'/);

    // A blocker takes the only VM slot, so the job stays queued until the blocker is cancelled.
    const b = (await (await upload(svc, blocker, 'blocker', token)).json()) as { id: string };
    await page.locator(`#running .job[data-job="${b.id}"]`).waitFor({ timeout: 60_000 });
    const r = await upload(svc, job, 'xss', token);
    expect(r.status).toBe(201);
    const { id } = (await r.json()) as { id: string };

    await page.locator(`#queued tr[data-job="${id}"]`).waitFor({ timeout: 30_000 });
    expect(await page.locator(`#queued tr[data-job="${id}"] td`).first().textContent()).toBe('1');
    const del = await fetch(`${svc.url}/api/v1/jobs/${b.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
    expect(del.status).toBe(200);
    const tail = page.locator(`#running .job[data-job="${id}"] pre.tail`);
    await tail.waitFor({ timeout: 300_000 });
    // Lines arrive while it runs: one tick, then a later one, in the same open page.
    await page.waitForFunction((sel) => /tick \d+/.test(document.querySelector(sel)?.textContent ?? ''), `#running .job[data-job="${id}"] pre.tail`, { timeout: 300_000 });
    const firstSeen = Number(/tick (\d+)/.exec((await tail.textContent()) ?? '')![1]);
    await page.waitForFunction(([sel, n]) => {
      const m = [...(document.querySelector(sel as string)?.textContent ?? '').matchAll(/tick (\d+)/g)];
      return m.some((x) => Number(x[1]) >= (n as number) + 3);
    }, [`#running .job[data-job="${id}"] pre.tail`, firstSeen] as const, { timeout: 120_000 });

    const row = page.locator(`#finished tr[data-job="${id}"]`);
    await row.waitFor({ timeout: 300_000 });
    expect(await row.locator('td').nth(1).textContent()).toBe('succeeded');
    const href = await row.locator('a.result-link').getAttribute('href');
    const dl = await page.evaluate(async (u) => {
      const x = await fetch(u!);
      const b = new Uint8Array(await x.arrayBuffer());
      return { status: x.status, magic: Array.from(b.slice(0, 6)) };
    }, href);
    expect(dl).toEqual({ status: 200, magic: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00] });

    // The job's own page: the whole log, the guest's <script> as text, never as markup.
    await page.goto(`${svc.url}/job.html?id=${id}`);
    await page.waitForFunction(() => (document.getElementById('log')?.textContent ?? '').includes('[jobrunner] succeeded'), undefined, { timeout: 60_000 });
    const logText = (await page.locator('#log').textContent())!;
    expect(logText).toContain('<script>alert(1)</script>');
    expect(await page.locator('#log script').count()).toBe(0);
    expect(await page.locator('script').count()).toBe(2); // common.js and job.js, nothing injected
    expect(dialogs).toEqual([]);
    const shot = path.join(work, 'dashboard-job.png');
    await page.screenshot({ path: shot, fullPage: true });
    await page.goto(svc.url + '/');
    await row.waitFor();
    await page.screenshot({ path: path.join(work, 'dashboard.png'), fullPage: true });
    expect(existsSync(shot)).toBe(true);
    console.log(`screenshots: ${work}/dashboard.png, ${shot}`);
  });
});
