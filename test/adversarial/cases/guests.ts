// Hostile guests (Run A): one that fakes its end markers and never powers off, a fork bomb, a
// memory eater, a console flood, one that fills and overruns its disk and rewrites its own header,
// one that probes network, CPUs, memory and the root disk. Plus how their qemu processes ran.
import { execFile } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';
import { BASE_DIR } from '../../helpers.js';
import type { Ctx } from '../lib/context.js';
import { head } from '../lib/fixtures.js';
import { statusOf } from '../lib/spool.js';
import { RUN_A, results, type RunA } from './queue-run.js';

const exec = promisify(execFile);
const seconds = (st: { startedAt: string | null; finishedAt: string }): number => (Date.parse(st.finishedAt) - Date.parse(st.startedAt!)) / 1000;

/** Register the cases; `run()` returns Run A's outcome. */
export function guestCases(ctx: () => Ctx, run: () => RunA, decompressed: (p: string) => void): void {
  it('a guest that fakes exit=0/end markers and never powers off is killed at --timeout and recorded as timeout', async () => {
    const { spool } = run();
    const st = await statusOf(spool, 'hang.img');
    expect(st).toMatchObject({ status: 'timeout', exitCode: null, dir: 'failed' });
    expect(st.reason).toBe(`the job ran past its ${RUN_A.timeoutS}s limit`);
    expect(seconds(st)).toBeLessThan(RUN_A.timeoutS + 30);
    expect(await readFile(path.join(spool.failed, 'hang.log'), 'utf8')).toContain('never powering off');
  });

  it('a fork bomb is contained in its guest and ends by the time limit at the latest', async () => {
    const { spool } = run();
    const st = await statusOf(spool, 'forkbomb.img');
    expect(['timeout', 'failed']).toContain(st.status);
    expect(st.exitCode).toBeNull(); // never reported an exit: it did not "finish"
    expect(st.reason).toMatch(new RegExp(`past its ${RUN_A.timeoutS}s limit|without reporting an exit status`));
    expect(seconds(st)).toBeLessThan(RUN_A.timeoutS + 30);
  });

  it('a memory eater is OOM-killed inside its guest; the guest sees only --memory and qemu stays bounded', async () => {
    const { spool, watch } = run();
    const st = await statusOf(spool, 'memhog.img');
    expect(st).toMatchObject({ status: 'succeeded' });
    const r = results(await readFile(path.join(spool.done, 'memhog.log'), 'utf8'));
    expect(Number(r.MemTotal!.split(/\s+/)[0])).toBeLessThanOrEqual(RUN_A.memoryMiB * 1024);
    expect(Number(r.oomkills)).toBeGreaterThan(0); // the guest's OOM killer did the work
    const peak = Math.max(...[...watch.samples.values()].map((q) => q.peakRss));
    // Guest RAM plus qemu's own (TCG translation cache, devices): bounded by the setting, not by the guest.
    expect(peak).toBeLessThan((RUN_A.memoryMiB + 384) * 1024 * 1024);
  });

  it('a console flood (a 300 KB line, then binary noise) is capped in the log and the exit marker is still found', async () => {
    const { spool } = run();
    const st = await statusOf(spool, 'flood.img');
    expect(st).toMatchObject({ status: 'succeeded', exitCode: 0 });
    expect(st.console!.truncated).toBe(true);
    expect(st.console!.bytes).toBeGreaterThan(RUN_A.logCap);
    expect((await stat(path.join(spool.done, 'flood.log'))).size).toBeLessThan(RUN_A.logCap + 1024);
  });

  it('a guest that fills its disk, writes past its end and rewrites its header cannot grow its image or touch the file it names', async () => {
    const { spool, sha } = run();
    const st = await statusOf(spool, 'diskhog.img');
    expect(st).toMatchObject({ status: 'succeeded' });
    expect(st.input.sha256).toBe(sha.get('diskhog.img')); // the submitted file itself was never written
    const r = results(await readFile(path.join(spool.done, 'diskhog.log'), 'utf8'));
    expect(r).toMatchObject({ hdr: '0' });
    expect(Number(r.beyond)).not.toBe(0);
    expect(Number(r.fill)).not.toBe(0); // ENOSPC
    const out = path.join(ctx().work, 'diskhog-result.img');
    await exec('sh', ['-c', 'xz -dc -- "$1" > "$2"', 'sh', path.join(spool.done, 'diskhog.img.xz'), out]);
    expect((await stat(out)).size).toBe(st.input.bytes); // the image did not grow
    const h = await head(out, 1024);
    expect(h.subarray(0, 4).toString('latin1')).toBe('QFI\xfb'); // the guest really did rewrite it...
    expect(h.toString('latin1')).toContain(ctx().host.secret); // ...naming a host file as backing
    expect(await ctx().ledger.modifiedSentinels()).toEqual([]); // ...which stayed untouched
    decompressed(out);
  });

  it('the guest sees no network, --cpus vCPUs, --memory RAM and two disks; its writes to the root disk stay in the snapshot', async () => {
    const { spool } = run();
    const r = results(await readFile(path.join(spool.done, 'probe,file=x,format=qcow2.log'), 'utf8'));
    expect(r.net).toBe('lo');
    expect(r.tcp).toBe('closed');
    expect(r.nproc).toBe('2');
    expect(Number(r.mem)).toBeLessThanOrEqual(RUN_A.memoryMiB * 1024);
    expect(r.disks).toBe('vda vdb');
    expect(r.rootwrite).toBe('0'); // accepted by the guest's disk...
    const modified = await ctx().ledger.modifiedSentinels();
    expect(modified.filter((f) => f.startsWith(BASE_DIR))).toEqual([]); // ...but root.img is unchanged
  });

  it('every qemu ran unprivileged, seccomp-sandboxed, without capabilities, with only its work image and overlay writable', async () => {
    const { watch, spool } = run();
    const uid = Number((await exec('id', ['-u', 'jobrunner-qemu'])).stdout.trim());
    expect(watch.samples.size).toBeGreaterThanOrEqual(8); // every VM job of the run was seen
    for (const q of watch.samples.values()) {
      expect(q.uids, `pid ${q.pid}`).toEqual([uid, uid, uid, uid]);
      expect(q.groups).toBe('');
      expect([q.noNewPrivs, q.seccomp, q.capEff, q.capBnd]).toEqual(['1', '2', '0000000000000000', '0000000000000000']);
      const argv = q.argv.join(' ');
      for (const flag of ['-nodefaults', '-no-user-config', '-display none', '-monitor none', '-nic none',
        '-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny']) expect(argv).toContain(flag);
      const drives = q.argv.filter((_, i) => q.argv[i - 1] === '-drive');
      if (q.argv.includes('-incoming')) {
        // Restored from a template (the default start): paused (-S) until verified, the state from
        // an inherited fd, root a snapshot over the template overlay over the read-only root.img,
        // the job disk attached over QMP from its fdset: no disk path reaches qemu's parser.
        expect(argv).toMatch(/-S -incoming fd:\d+/);
        expect(drives).toEqual(['if=none,id=root,driver=qcow2,file.driver=file,file.filename=/dev/fdset/3,backing=base,snapshot=on']);
        const blockdevs = q.argv.filter((_, i) => q.argv[i - 1] === '-blockdev').map((b) => JSON.parse(b) as Record<string, unknown>);
        expect(blockdevs).toEqual([{ driver: 'raw', 'node-name': 'base', 'read-only': true, file: { driver: 'file', filename: '/dev/fdset/1' } }]);
      } else {
        expect(drives).toHaveLength(2);
        for (const d of drives) expect(d).toMatch(/^file=\/dev\/fdset\/\d,format=raw,.*werror=report/);
      }
      const allowed = (f: string): boolean => new RegExp(`^${spool.queue}/\\.running/[\\w-]+/work\\.img$`).test(f)
        || new RegExp(`^${os.tmpdir()}/jobrunner-vm-[\\w-]+/vl\\.\\w+( \\(deleted\\))?$`).test(f); // the snapshot overlay
      expect(q.writable.filter((f) => !allowed(f)), `pid ${q.pid}`).toEqual([]);
      expect(q.writable.some((f) => f.endsWith('/work.img'))).toBe(true);
    }
  });

  it('no job image was ever mounted or loop-attached on the host', () => {
    expect([...run().watch.hostMounts]).toEqual([]);
  });
}
