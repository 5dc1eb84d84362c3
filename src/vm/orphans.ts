// qemu processes a dead service left behind. setpriv --pdeathsig normally kills qemu with the
// service; this sweep is the second line of defence at start-up. A qemu is recognised by what it
// holds open (its disks are inherited fds on files under the claims directory), not by its command
// line: with fd-passed disks the command line names no spool path at all.
import { readdir, readFile, readlink } from 'node:fs/promises';
import path from 'node:path';

/** True when process `pid` has a file descriptor open on something under directory `dir`. */
export async function holdsFilesUnder(pid: number, dir: string): Promise<boolean> {
  const prefix = path.resolve(dir) + '/';
  const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
  for (const fd of fds) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    if (target.startsWith(prefix)) return true;
  }
  return false;
}

/** argv of a process (empty when it is gone or unreadable). */
async function argvOf(pid: number): Promise<string[]> {
  const raw = await readFile(`/proc/${pid}/cmdline`).catch(() => Buffer.alloc(0));
  return raw.toString('utf8').split('\0').filter((a) => a !== '');
}

/**
 * Pids of processes running `qemuBinary` (directly, via its #! interpreter, or still in the
 * setpriv wrapper) that hold files under `dir`. Only those are ever killed: an operator's pager
 * reading a console log is left alone.
 */
export async function findOrphanQemu(dir: string, qemuBinary: string): Promise<number[]> {
  const want = path.basename(qemuBinary);
  const out: number[] = [];
  for (const p of await readdir('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    const argv = await argvOf(Number(p));
    const isQemu = argv.slice(0, 2).some((a) => a === qemuBinary || path.basename(a) === want) || path.basename(argv[0] ?? '') === 'setpriv';
    if (isQemu && await holdsFilesUnder(Number(p), dir)) out.push(Number(p));
  }
  return out;
}
