// What every adversarial case shares: a work directory, host "sentinel" files that hostile queue
// entries point at (and that must come out of the suite unchanged), a few ordinary job images, and
// the ledger the three figures are computed from.
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { BASE_DIR, scratch } from '../../helpers.js';
import { job } from './fixtures.js';
import { Ledger } from './ledger.js';

const exec = promisify(execFile);

export interface Host {
  /** A valid job image outside the spool: if a link to it were ever followed, it would run. */
  jobImage: string;
  /** A "secret" text file outside the spool. */
  secret: string;
  /** A directory outside the spool, with a file in it. */
  dir: string;
  dirFile: string;
  /** A FIFO outside the spool (opening it without O_NONBLOCK would hang the opener). */
  fifo: string;
}

export interface Ctx {
  ledger: Ledger;
  work: string;
  host: Host;
  /** An ordinary job that succeeds. */
  trivial: string;
  /** 4 KiB of 'A': too small for an ext filesystem (names tests use it: rejected at once). */
  junkSmall: string;
  /** 1 MiB of random bytes. */
  junk: string;
}

/** Build the shared context (sentinels fingerprinted before any service runs). */
export async function makeContext(): Promise<Ctx> {
  const work = await scratch('adv-work');
  const hostDir = path.join(work, 'host');
  await mkdir(path.join(hostDir, 'dir'), { recursive: true });
  const host: Host = {
    jobImage: await job(hostDir, 'sentinel-job', 'mkdir -p /job/output\necho PWNED > /job/output/pwned'),
    secret: path.join(hostDir, 'secret.txt'),
    dir: path.join(hostDir, 'dir'),
    dirFile: path.join(hostDir, 'dir', 'inside.txt'),
    fifo: path.join(hostDir, 'fifo'),
  };
  await writeFile(host.secret, 'host secret: must never reach a result or be changed\n');
  await writeFile(host.dirFile, 'a file in a host directory\n');
  await exec('mkfifo', [host.fifo]);
  const junkSmall = path.join(work, 'junk-small');
  await writeFile(junkSmall, Buffer.alloc(4096, 0x41));
  const junk = path.join(work, 'junk');
  await exec('dd', ['if=/dev/urandom', `of=${junk}`, 'bs=1M', 'count=1', 'status=none']);
  const ctx: Ctx = {
    ledger: new Ledger(), work, host, junkSmall, junk,
    trivial: await job(work, 'trivial', 'mkdir -p /job/output\necho ok > /job/output/ok'),
  };
  for (const f of [host.jobImage, host.secret, host.dirFile, host.fifo]) await ctx.ledger.watchSentinel(f);
  // The base image is the other host file within a guest's reach (its root disk, in snapshot mode).
  // root.img is 4 GiB sparse: stat (size, mtime, ctime) instead of a 30 s hash; a write changes both times.
  await ctx.ledger.watchSentinel(path.join(BASE_DIR, 'default', 'root.img'), false);
  for (const f of ['vmlinuz', 'initrd.img', 'image.json']) await ctx.ledger.watchSentinel(path.join(BASE_DIR, 'default', f));
  return ctx;
}
