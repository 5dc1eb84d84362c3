// Start-up guards of the service that need no VM: a planted lock symlink, a .running directory
// the service does not own, and a job interrupted max-attempts times.
import { spawn } from 'node:child_process';
import { chmod, mkdir, readFile, symlink, writeFile, copyFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { HAVE_BASE, REPO, makeJob, scratch } from '../helpers.js';

function service(root: string, extra: string[] = []): Promise<{ code: number | null; out: string }> {
  const args = ['--queue', path.join(root, 'queue'), '--done', path.join(root, 'done'), '--failed', path.join(root, 'failed'), '--settle', '300ms', ...extra];
  return new Promise((resolve) => {
    const c = spawn(path.join(REPO, 'jobrunner'), args, { env: { ...process.env, JOBRUNNER_CONFIG: path.join(root, 'c.json'), JOBRUNNER_LISTEN: 'off' } });
    let out = '';
    c.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    c.stderr.on('data', (d: Buffer) => { out += d.toString(); });
    c.on('exit', (code) => resolve({ code, out }));
  });
}

describe.skipIf(!HAVE_BASE)('service start-up guards', () => {
  it('never writes through a lock file planted as a symlink', async () => {
    const root = await scratch('guard-lock');
    await writeFile(path.join(root, 'c.json'), '{}');
    const victim = path.join(root, 'victim.txt');
    await writeFile(victim, 'precious\n');
    await mkdir(path.join(root, 'queue'), { recursive: true });
    await symlink(victim, path.join(root, 'queue', '.jobrunner.lock'));
    const r = await service(root, ['--once']);
    expect(r.code, r.out).toBe(0);
    expect(await readFile(victim, 'utf8')).toBe('precious\n');
  });

  it('refuses to start when queue/.running is writable by others', async () => {
    const root = await scratch('guard-running');
    await writeFile(path.join(root, 'c.json'), '{}');
    await mkdir(path.join(root, 'queue', '.running'), { recursive: true });
    await chmod(path.join(root, 'queue', '.running'), 0o777);
    const r = await service(root, ['--once']);
    expect(r.code).not.toBe(0);
    expect(r.out).toMatch(/\.running must be a directory owned by this service and writable only by it/);
  });

  it('fails a job interrupted max-attempts times as interrupted, without running it again', async () => {
    const root = await scratch('guard-attempts');
    await writeFile(path.join(root, 'c.json'), '{}');
    const img = await makeJob(root, 'again', 'exit 0');
    const dir = path.join(root, 'queue', '.running', 'crashy-1');
    await mkdir(dir, { recursive: true });
    await chmod(path.join(root, 'queue', '.running'), 0o755);
    await copyFile(img, path.join(dir, 'input.img'));
    const t = new Date().toISOString();
    await writeFile(path.join(dir, 'lease.json'), JSON.stringify({
      id: 'crashy-1', name: 'again', submitted: 'again.img', base: null, compressed: false, attempt: 3,
      servicePid: 999999, qemuPid: null, submittedAt: t, claimedAt: t, startedAt: t,
    }));
    const r = await service(root, ['--once', '--max-attempts', '3']);
    expect(r.code, r.out).toBe(0);
    const st = JSON.parse(await readFile(path.join(root, 'failed', 'again.json'), 'utf8')) as { status: string; reason: string; attempt: number; durations: { boot: number | null } };
    expect(st).toMatchObject({ status: 'failed', attempt: 4 });
    expect(st.reason).toMatch(/^interrupted: the service stopped while running this job 3 times/);
    expect(st.durations.boot).toBeNull(); // it did not boot again
  });
});

describe.skipIf(!HAVE_BASE)('service start-up sweep', () => {
  it('removes qemu scratch directories a crashed run of this spool left in the temp dir, and only those', async () => {
    const { vmTmpPrefix } = await import('../../src/spool/spool.js');
    const os = await import('node:os');
    const { mkdtemp, readdir } = await import('node:fs/promises');
    const root = await scratch('guard-sweep');
    await writeFile(path.join(root, 'c.json'), '{}');
    const ours = await mkdtemp(path.join(os.tmpdir(), `${vmTmpPrefix(path.join(root, 'queue'), 'gone-1')}-`));
    const other = await mkdtemp(path.join(os.tmpdir(), `${vmTmpPrefix(path.join(root, 'other-queue'), 'x')}-`));
    const r = await service(root, ['--once']);
    expect(r.code, r.out).toBe(0);
    const left = await readdir(os.tmpdir());
    expect(left).not.toContain(path.basename(ours));
    expect(left).toContain(path.basename(other));
    const { rm } = await import('node:fs/promises');
    await rm(other, { recursive: true, force: true });
  });
});
