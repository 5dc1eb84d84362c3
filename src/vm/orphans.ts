// qemu processes a dead service left behind. setpriv --pdeathsig normally kills qemu with the
// service; this sweep is the second line of defence at start-up. A qemu is recognised by what it
// holds open (its disks are inherited fds on files under the claims directory), not by its command
// line: with fd-passed disks the command line names no spool path at all.
import path from 'node:path';
import { findProcesses, holdsFilesUnder } from '../procfs.js';

/**
 * Pids of processes running `qemuBinary` (directly, via its #! interpreter, or still in the
 * setpriv wrapper) that hold files under `dir`. Only those are ever killed: an operator's pager
 * reading a console log is left alone.
 */
export async function findOrphanQemu(dir: string, qemuBinary: string): Promise<number[]> {
  const want = path.basename(qemuBinary);
  const isQemu = (raw: string[]): boolean => {
    const argv = raw.filter((a) => a !== '');
    return argv.slice(0, 2).some((a) => a === qemuBinary || path.basename(a) === want) || path.basename(argv[0] ?? '') === 'setpriv';
  };
  const out: number[] = [];
  for (const pid of await findProcesses(isQemu)) {
    if (pid !== process.pid && await holdsFilesUnder(pid, dir)) out.push(pid);
  }
  return out;
}
