// Run A: one `--once` service run (real qemu, concurrency 2) over a queue holding every kind of
// hostile entry at once: special files and links, lying images, hostile names, misbehaving guests.
// The cases in entries.ts, images.ts, names.ts and guests.ts assert on what it left behind.
import { execFile } from 'node:child_process';
import { copyFile, link, mkdir, symlink, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Ctx } from '../lib/context.js';
import { corruptCopy, halfCopy, job, qcow2Naming, truncatedCopy, unixSocket, vmdkNaming, xz, zeroBomb } from '../lib/fixtures.js';
import { QemuWatch } from '../lib/qemu-watch.js';
import { leftovers, makeSpool, sha256, startService, type Spool } from '../lib/spool.js';

const exec = promisify(execFile);

export const RUN_A = { timeoutS: 75, memoryMiB: 384, logCap: 64 * 1024, maxImage: 200 * 1024 * 1024 };

/** Raw names that are not valid UTF-8 (written as bytes) and how statuses must show them. */
export const RAW = {
  cafe: Buffer.concat([Buffer.from('caf'), Buffer.from([0xe9]), Buffer.from('-'), Buffer.from([0xff, 0xfe]), Buffer.from('.img')]),
  long: Buffer.concat([Buffer.alloc(120, 0xff), Buffer.alloc(131, 0x4e), Buffer.from('.img')]),
};

export interface RunA {
  spool: Spool;
  exitCode: number | null;
  output: string;
  watch: QemuWatch;
  durationMs: number;
  /** sha256 of what was submitted, by queue name (for "the input is never modified"). */
  sha: Map<string, string>;
  leftovers: string[];
  jobs: Record<string, string>;
}

const GUEST_JOBS: Record<string, string> = {
  // Reads the marker nonce from its own kernel command line, prints a perfect exit=0/end, then never stops.
  hang: `n=$(sed -n 's/.*construir\\.nonce=\\([A-Za-z0-9]*\\).*/\\1/p' /proc/cmdline)
printf '\\n@@construir:%s:exit=0@@\\n@@construir:%s:end@@\\n' "$n" "$n"
echo "faked the end markers; never powering off"
sleep 100000`,
  forkbomb: 'echo forking without end\nf() { f | f & }\nf\nsleep 100000',
  // Three allocations that each fit, together more than the guest has: the guest's OOM killer acts.
  memhog: `grep MemTotal /proc/meminfo | sed 's/^/RESULT /'
for i in 1 2 3; do dd if=/dev/zero of=/dev/null bs=200M count=1 2>/dev/null & done
wait
echo "RESULT oomkills=$(dmesg | grep -c 'Killed process')"
exit 0`,
  flood: `head -c 300000 /dev/zero | tr '\\0' x
echo
timeout 5 cat /dev/urandom
echo
echo flood over
exit 0`,
  // Rewrites its own disk's first KiB as a qcow2 header naming a host file (ext4 ignores that
  // KiB, so it still mounts), writes past the end of its disk, then fills its filesystem.
  diskhog: `dd if=/job/hdr of=/dev/vdb bs=1024 count=1 conv=notrunc,fsync 2>/dev/null; echo "RESULT hdr=$?"
sz=$(blockdev --getsz /dev/vdb)
dd if=/dev/zero of=/dev/vdb bs=512 seek=$sz count=8 conv=notrunc 2>/dev/null; echo "RESULT beyond=$?"
dd if=/dev/zero of=/job/fill bs=1M 2>/dev/null; echo "RESULT fill=$?"
sync
exit 0`,
  probe: `echo "RESULT net=$(ls /sys/class/net | tr '\\n' ' ')"
echo "RESULT nproc=$(nproc)"
echo "RESULT mem=$(awk '/MemTotal/{print $2}' /proc/meminfo)"
echo "RESULT disks=$(ls /sys/block | grep vd | tr '\\n' ' ')"
if timeout 5 bash -c 'exec 3<>/dev/tcp/10.0.2.2/22' 2>/dev/null; then echo "RESULT tcp=open"; else echo "RESULT tcp=closed"; fi
mb=$(( $(blockdev --getsz /dev/vda) / 2048 - 1 ))
dd if=/dev/urandom of=/dev/vda bs=1M seek=$mb count=1 conv=notrunc,fsync 2>/dev/null; echo "RESULT rootwrite=$?"
exit 0`,
};

/** Populate the queue, run the service once over it, and watch its qemu processes meanwhile. */
export async function runQueue(ctx: Ctx): Promise<RunA> {
  const w = path.join(ctx.work, 'run-a');
  await mkdir(w, { recursive: true });
  const s = await makeSpool('a', ['--once', '--concurrency', '2', '--timeout', `${RUN_A.timeoutS}s`, '--memory', `${RUN_A.memoryMiB}M`,
    '--log-cap', `${RUN_A.logCap}`, '--max-image-size', `${RUN_A.maxImage}`]);
  const q = (name: string): string => path.join(s.queue, name);
  const sha = new Map<string, string>();
  const expect = (shown: string): void => ctx.ledger.expectResult(s, shown);
  const put = async (src: string, name: string): Promise<void> => {
    await copyFile(src, q(name));
    sha.set(name, await sha256(src));
    expect(name);
  };

  const jobs: Record<string, string> = {};
  // The header diskhog writes over its own disk: qcow2, backing file = a host file.
  await mkdir(path.join(w, 'diskhog.tree'), { recursive: true });
  await qcow2Naming(path.join(w, 'diskhog.tree', 'hdr'), ctx.host.secret);
  for (const [name, script] of Object.entries(GUEST_JOBS)) jobs[name] = await job(w, name, script);

  // Queue entries that are not plain files of ours.
  for (const [name, target] of [['link-to-job.img', ctx.host.jobImage], ['link-to-dev.img', '/dev/zero'], ['link-to-dir.img', ctx.host.dir],
    ['link-to-fifo.img', ctx.host.fifo], ['link-dangling.img', '/nonexistent/job.img']] as const) {
    await symlink(target, q(name));
    expect(name);
  }
  await link(ctx.host.jobImage, q('hardlink-job.img')); expect('hardlink-job.img');
  await link(ctx.host.secret, q('hardlink-secret.img')); expect('hardlink-secret.img');
  await mkdir(q('dir.img')); await writeFile(path.join(q('dir.img'), 'keep.txt'), 'kept\n'); expect('dir.img');
  await exec('mkfifo', [q('fifo.img')]); expect('fifo.img');
  await exec('mknod', [q('chardev.img'), 'c', '1', '3']); expect('chardev.img');
  await exec('mknod', [q('blockdev.img'), 'b', '7', '7']); expect('blockdev.img');
  await unixSocket(q('socket.img')); expect('socket.img');

  // Images that are not what they claim.
  await writeFile(path.join(w, 'empty'), '');
  await put(path.join(w, 'empty'), 'empty.img');
  await put(ctx.junk, 'junk.img');
  await put(await qcow2Naming(path.join(w, 'q.qcow2'), ctx.host.secret), 'qcow2.img');
  await put(await vmdkNaming(path.join(w, 'd.vmdk'), ctx.host.secret), 'vmdk.img');
  await writeFile(q('huge.img'), ''); await truncate(q('huge.img'), 2 ** 40); expect('huge.img');
  await put(await truncatedCopy(ctx.trivial, path.join(w, 'truncfs'), 2 << 20), 'truncfs.img');
  const goodXz = await xz(ctx.trivial, path.join(w, 'trivial.img.xz'));
  await put(await corruptCopy(goodXz, path.join(w, 'corrupt.xz')), 'corrupt.img.xz');
  await put(await halfCopy(goodXz, path.join(w, 'half.xz')), 'truncated.img.xz');
  await put(await zeroBomb(path.join(w, 'bomb.xz'), 300 * 1024 * 1024), 'bomb.img.xz');
  await put(await xz(path.join(w, 'q.qcow2'), path.join(w, 'qcow2.xz')), 'qcow2inside.img.xz');
  await put(ctx.junkSmall, 'notxz.img.xz');

  // Names.
  await put(jobs.probe!, 'probe,file=x,format=qcow2.img');
  await copyFile(ctx.trivial, Buffer.concat([Buffer.from(`${s.queue}/`), RAW.cafe]));
  sha.set('cafe', await sha256(ctx.trivial));
  expect('caf\\xe9-\\xff\\xfe.img');
  await copyFile(ctx.junkSmall, Buffer.concat([Buffer.from(`${s.queue}/`), RAW.long]));
  expect(`${'\\xff'.repeat(120)}${'N'.repeat(131)}.img`);
  for (const name of ['my job.img', 'new\nline.img', '-rf.img', '--help.img', 'x..y.img', `${'L'.repeat(251)}.img`,
    'dup.img', 'dup.img.xz', 'a\nb.img', 'a_b.img']) await put(ctx.junkSmall, name);
  await put(ctx.trivial, 'evil@...img');
  await put(ctx.trivial, 'nobase@nosuch.img');
  await copyFile(ctx.junkSmall, q('..img'));
  ctx.ledger.expectStays(s, '..img');

  // Guests.
  for (const name of ['hang', 'forkbomb', 'memhog', 'flood', 'diskhog']) await put(jobs[name]!, `${name}.img`);

  const watch = new QemuWatch(s.root);
  watch.start();
  const t = Date.now();
  const svc = startService(s);
  const exitCode = await svc.exited;
  const durationMs = Date.now() - t;
  await watch.stop();
  await ctx.ledger.auditSpool(s);
  return { spool: s, exitCode, output: svc.output(), watch, durationMs, sha, leftovers: await leftovers(s), jobs };
}

/** RESULT key=value lines a guest printed, from its published console log. */
export function results(log: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of log.matchAll(/^RESULT (\w+)[=:]\s*(.*?)\s*$/gm)) out[m[1]!] = m[2]!;
  return out;
}
