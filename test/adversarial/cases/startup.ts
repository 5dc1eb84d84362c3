// Start-up and privilege faults: a missing or corrupt base image and --accel kvm without KVM stop
// the service at once with a clear error (and touch no queued job); a service crash between
// claiming and screening leaves hostile entries in claims, which the next start must screen too;
// a service without root meets a queued file it cannot read.
import { execFile } from 'node:child_process';
import { chown, copyFile, link, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { probeKvm } from '../../../src/vm/accel.js';
import { BASE_DIR } from '../../helpers.js';
import type { Ctx } from '../lib/context.js';
import { leftovers, makeSpool, sha256, startService, statusOf, type Spool } from '../lib/spool.js';

const exec = promisify(execFile);
const KVM = await probeKvm().then((p) => p.cpuFlags && p.devKvm);

/** Start the service over a spool with one queued job; returns its exit code and output. */
async function failStart(ctx: Ctx, name: string, extra: string[]): Promise<{ code: number | null; out: string; s: Spool }> {
  const s = await makeSpool(name, ['--once', ...extra]);
  await copyFile(ctx.trivial, path.join(s.queue, 'waiting.img'));
  ctx.ledger.expectStays(s, 'waiting.img');
  const svc = startService(s);
  const code = await svc.exited;
  await ctx.ledger.auditSpool(s);
  return { code, out: svc.output(), s };
}

/** A base image directory whose `default` is a copy of the real one with image.json edited. */
async function fakeBaseDir(ctx: Ctx, label: string, json: (meta: string) => string): Promise<string> {
  const dir = path.join(ctx.work, `base-${label}`, 'default');
  await mkdir(dir, { recursive: true });
  for (const f of ['root.img', 'vmlinuz', 'initrd.img']) await symlink(path.join(BASE_DIR, 'default', f), path.join(dir, f));
  await writeFile(path.join(dir, 'image.json'), json(await readFile(path.join(BASE_DIR, 'default', 'image.json'), 'utf8')));
  return path.dirname(dir);
}

/** Register the start-up cases. */
export function startupCases(ctx: () => Ctx): void {
  it('a missing, incomplete or corrupt base image stops the start with a clear error and a non-zero exit; the queue is untouched', async () => {
    const c = ctx();
    const empty = path.join(c.work, 'no-base');
    await mkdir(empty, { recursive: true });
    const corrupt = await fakeBaseDir(c, 'corrupt', (m) => {
      const j = JSON.parse(m) as { files: Record<string, { bytes: number }> };
      j.files['root.img']!.bytes += 4096;
      return JSON.stringify(j);
    });
    const garbage = await fakeBaseDir(c, 'garbage', () => '{"files": ');
    const cases: Array<[string, RegExp]> = [
      [empty, /base image 'default' not found in .* \(no image\.json\); build it with: scripts\/build-base-image/],
      [corrupt, /base image 'default' is corrupt: root\.img is \d+ bytes, image\.json says \d+/],
      [garbage, /base image 'default' has an unreadable image\.json/],
    ];
    for (const [dir, message] of cases) {
      const r = await failStart(c, `base-${path.basename(path.dirname(dir))}`, ['--base-image-dir', dir]);
      expect(r.code, r.out).not.toBe(0);
      expect(r.out).toMatch(message);
      expect(await sha256(path.join(r.s.queue, 'waiting.img'))).toBe(await sha256(c.trivial));
    }
  });

  it.skipIf(KVM)('--accel kvm without KVM refuses to start instead of running slowly', async () => {
    const r = await failStart(ctx(), 'kvm', ['--accel', 'kvm']);
    expect(r.code, r.out).not.toBe(0);
    expect(r.out).toMatch(/--accel kvm was requested but KVM is not usable/);
  });

  describe_('hostile entries left in claims by a crash between claim and screen', (run) => {
    it('are screened at the next start: rejected, never followed or run; a directory is moved aside, not deleted', async () => {
      const { s, code, out } = run();
      expect(code, out.slice(-2000)).toBe(0);
      const kinds: Record<string, RegExp> = {
        'stale-link.img': /symbolic link/, 'stale-hardlink.img': /2 hard links/, 'stale-dir.img': /a directory/, 'stale-fifo.img': /a FIFO/,
      };
      for (const [name, why] of Object.entries(kinds)) {
        expect(await statusOf(s, name), name).toMatchObject({ status: 'rejected', reason: expect.stringMatching(why) });
      }
      const aside = /moved aside, untouched, to (\S+)$/.exec((await statusOf(s, 'stale-dir.img')).reason)![1]!;
      expect(await readFile(path.join(aside, 'keep.txt'), 'utf8')).toBe('kept\n');
      expect(await leftovers(s)).toEqual([]);
      expect(await ctx().ledger.modifiedSentinels()).toEqual([]);
    });
  }, async () => {
    const c = ctx();
    const s = await makeSpool('stale', ['--once']);
    const entries: Record<string, (p: string) => Promise<void>> = {
      'stale-link.img': (p) => symlink(c.host.jobImage, p),
      'stale-hardlink.img': (p) => link(c.host.secret, p),
      'stale-dir.img': async (p) => { await mkdir(p); await writeFile(path.join(p, 'keep.txt'), 'kept\n'); },
      'stale-fifo.img': (p) => exec('mkfifo', [p]).then(() => undefined),
    };
    let i = 0;
    for (const [name, make] of Object.entries(entries)) {
      const id = `stale${i++}-00000000`;
      const dir = path.join(s.queue, '.running', id);
      await mkdir(dir, { recursive: true });
      const now = new Date().toISOString();
      await writeFile(path.join(dir, 'lease.json'), JSON.stringify({
        id, name: name.slice(0, -4), submitted: name, base: null, compressed: false, attempt: 1, servicePid: 999999,
        qemuPid: null, submittedAt: now, claimedAt: now, startedAt: null,
      }));
      await make(path.join(dir, 'input.img'));
      c.ledger.expectResult(s, name);
    }
    const svc = startService(s);
    const code = await svc.exited;
    await c.ledger.auditSpool(s);
    return { s, code, out: svc.output() };
  });

  if (process.getuid?.() !== 0) return; // the case below switches users
  describe_('a service without root and a queued file it cannot read', (run) => {
    it('is rejected as unreadable (not an internal error), and the file is kept unchanged as evidence', async () => {
      const { s, code, out, want } = run();
      expect(code, out.slice(-2000)).toBe(0);
      const st = await statusOf(s, 'secret.img');
      expect(st).toMatchObject({ status: 'rejected', dir: 'failed' });
      expect(st.reason).toBe('not a usable job image: it cannot be read (permission denied)');
      expect(await sha256(path.join(s.failed, 'secret.img'))).toBe(want);
    });
  }, async () => {
    const c = ctx();
    const s = await makeSpool('unpriv', ['--once']);
    for (const d of [s.root, s.queue, s.done, s.failed, path.join(s.root, 'config.json')]) await chown(d, 65534, 65534);
    // Owned by root, mode 0600: the unprivileged service may move it (it owns the queue) but not read it.
    await copyFile(c.junk, path.join(s.queue, 'secret.img'));
    await exec('chmod', ['0600', path.join(s.queue, 'secret.img')]);
    c.ledger.expectResult(s, 'secret.img');
    const svc = startService(s, [], ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--']);
    const code = await svc.exited;
    await c.ledger.auditSpool(s);
    return { s, code, out: svc.output(), want: await sha256(c.junk) };
  });
}

/** A describe block whose beforeAll runs `setup` once; cases get its result through `run()`. */
function describe_<T>(title: string, cases: (run: () => T) => void, setup: () => Promise<T>): void {
  describe(title, () => {
    let v: T | null = null;
    beforeAll(async () => { v = await setup(); });
    cases(() => { if (v === null) throw new Error(`${title}: set-up did not complete`); return v; });
  });
}
