// ./jobrunner end to end with a fake qemu: one service per spool (the lock), `jobrunner status`
// while a job runs, and SIGTERM draining a running job within --shutdown-grace.
import { spawn } from 'node:child_process';
import { copyFile, readdir } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO, jobrunner } from '../helpers.js';
import { fixtureJob } from '../lib/fixture-base.js';
import { statusOf, tierSpool, waitFor } from '../lib/tier.js';

describe('./jobrunner with a fake qemu', { timeout: 120_000 }, () => {
  it('serves one spool at a time, reports a running job in status, and drains it on SIGTERM', async () => {
    const t = await tierSpool('cli', ['--shutdown-grace', '30s']);
    await copyFile(await fixtureJob(t.root, 'slow', 'slow', { sleep: 4 }), path.join(t.queue, 'slow.img'));
    const child = spawn(path.join(REPO, 'jobrunner'), t.args, { env: { ...process.env, ...t.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    try {
      await waitFor('the job to start', async () => out.includes('"msg":"job started"'), 60_000);
      const status = await waitFor('status to show the job running', async () => {
        const r = await jobrunner(['status', '--json', '--queue', t.queue, '--done', t.done, '--failed', t.failed], { env: t.env });
        const j = JSON.parse(r.stdout) as { running: Array<{ name: string; state: string; lastLine: string }> };
        return j.running[0]?.lastLine === 'fake job works' ? j : null;
      });
      expect(status.running).toMatchObject([{ name: 'slow', state: 'running' }]);

      const second = await jobrunner(t.args, { env: t.env, timeoutMs: 60_000 });
      expect(second.code, second.stdout + second.stderr).not.toBe(0);
      expect(second.stdout + second.stderr).toContain(`another jobrunner (pid ${child.pid}) is serving ${t.queue}`);

      child.kill('SIGTERM');
      expect(await exited, out.slice(-3000)).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
    expect(out).toContain('"msg":"stopping"');
    expect(out).not.toContain('shutdown grace over');
    expect(await statusOf(t, 'slow.img')).toMatchObject({ dir: 'done', status: 'succeeded', attempt: 1 });
    const human = await jobrunner(['status', '--queue', t.queue, '--done', t.done, '--failed', t.failed], { env: t.env });
    expect(human.stdout).toMatch(/running \(0\):\nrecently finished \(1 of 1\):\n.*succeeded {3}slow exit 0 {2}the job succeeded/);
  });

  it('a --listen address that is taken stops start-up with JR_E_LISTEN before any job is claimed', async () => {
    const t = await tierSpool('cli-listen');
    await copyFile(await fixtureJob(t.root, 'waits', 'waits'), path.join(t.queue, 'waits.img'));
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    try {
      const port = (taken.address() as net.AddressInfo).port;
      const r = await jobrunner(t.args, { env: { ...t.env, JOBRUNNER_LISTEN: `127.0.0.1:${port}` }, timeoutMs: 60_000 });
      expect(r.code, r.stdout + r.stderr).not.toBe(0);
      expect(r.stderr).toContain('JR_E_LISTEN');
      expect(r.stderr).toContain(`cannot listen on 127.0.0.1:${port}: the address is in use`);
      expect(r.stdout + r.stderr).not.toContain('job started');
      expect((await readdir(t.queue)).sort()).toEqual(['waits.img']); // not claimed, no .running, no .uploads
    } finally {
      await new Promise<void>((r) => taken.close(() => r()));
    }
  });
});
