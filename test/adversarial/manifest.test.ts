// Issue 11: hostile job manifests (jobrunner.json) are rejected before boot, each with a status
// file naming the problem and the submitted image kept as evidence; qemu is never started (a fake
// qemu records any call). Needs no VM: runs in seconds.
import { chmod, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { jobTree, jobrunner, runProc, REPO, scratch } from '../helpers.js';

const CASES: Record<string, { manifest: string; reason: RegExp }> = {
  malformed: { manifest: '{"packages": ["debhelper"', reason: /jobrunner\.json: not valid JSON/ },
  huge: { manifest: JSON.stringify({ packages: ['a'.repeat(70 * 1024)] }), reason: /jobrunner\.json: .* is \d+ bytes, more than the 65536 allowed/ },
  shell: { manifest: JSON.stringify({ packages: ['hello; touch /tmp/pwned-by-manifest'] }), reason: /Expected packages\[0\] to be a Debian relation/ },
  option: { manifest: JSON.stringify({ packages: ['-oAPT::Get::AllowUnauthenticated=1'] }), reason: /Expected packages\[0\] to be a Debian relation/ },
  thousands: { manifest: JSON.stringify({ packages: Array.from({ length: 10_000 }, (_, i) => `pk${i}`) }), reason: /(more than the 65536 allowed|Expected at most 500 packages)/ },
  // 10,000 entries in under 64 KiB (short, repeated names): the count cap, not the size cap, refuses it.
  compact: { manifest: JSON.stringify({ packages: Array.from({ length: 10_000 }, () => 'aa') }), reason: /jobrunner\.json: Expected at most 500 packages, got 10000/ },
  unknown: { manifest: JSON.stringify({ packages: [], network: 'user' }), reason: /unknown field "network"/ },
  greedy: { manifest: JSON.stringify({ memory: '512G' }), reason: /above this service's limit \(--max-memory/ },
};

let root = '';
let qemuLog = '';
beforeAll(async () => {
  root = await scratch('manifest-adv');
  await mkdir(path.join(root, 'queue'));
  await writeFile(path.join(root, 'c.json'), '{}');
  qemuLog = path.join(root, 'qemu-called');
  const fake = path.join(root, 'fake-qemu');
  await writeFile(fake, `#!/bin/sh\necho "$@" >> ${qemuLog}\nexit 1\n`);
  await chmod(fake, 0o755);
  for (const [name, c] of Object.entries(CASES)) {
    const tree = await jobTree(path.join(root, `${name}.tree`), 'exit 0', { 'jobrunner.json': c.manifest });
    const r = await runProc(path.join(REPO, 'scripts', 'mkimage'), [tree, '-o', path.join(root, 'queue', `${name}.img`), '--extra', '8M']);
    if (r.code !== 0) throw new Error(r.stderr);
  }
  const r = await jobrunner(['--queue', path.join(root, 'queue'), '--done', path.join(root, 'done'), '--failed', path.join(root, 'failed'),
    '--settle', '200ms', '--once', '--qemu', fake, '--run-as', ''], { env: { ...process.env, JOBRUNNER_CONFIG: path.join(root, 'c.json') }, timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`service exited ${r.code}: ${r.stderr}`);
}, 180_000);

describe('hostile job manifests', () => {
  for (const [name, c] of Object.entries(CASES)) {
    it(`${name}: rejected before boot with a clear reason, the input kept`, async () => {
      const st = JSON.parse(await readFile(path.join(root, 'failed', `${name}.json`), 'utf8')) as { status: string; reason: string; durations: { boot: number | null } };
      expect(st.status).toBe('rejected');
      expect(st.reason).toMatch(c.reason);
      expect(st.durations.boot).toBeNull();
      expect((await readdir(path.join(root, 'failed'))).filter((f) => f.startsWith(`${name}.`)).sort()).toEqual([`${name}.img`, `${name}.json`, `${name}.log`]);
    });
  }
  it('never started qemu and left nothing in the queue', async () => {
    await expect(readFile(qemuLog, 'utf8')).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await readdir(path.join(root, 'queue'))).filter((f) => !f.startsWith('.'))).toEqual([]);
    await expect(readFile('/tmp/pwned-by-manifest')).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
