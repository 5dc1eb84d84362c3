// A running job's heartbeat, read from its qemu process: CPU seconds (utime+stime in
// /proc/PID/stat) and bytes written to disk (write_bytes in /proc/PID/io). A build whose output
// is redirected prints nothing for many minutes; these numbers still move while it works.
import { readFile } from 'node:fs/promises';

export interface Heartbeat { cpuSeconds: number; diskWriteBytes: number | null; at: string }

const CLK_TCK = 100; // USER_HZ: the unit of /proc/PID/stat times on every Linux ABI

/** Parse /proc/PID/stat: fields after the parenthesised comm (which may hold spaces and ')'). */
export function cpuSecondsFromStat(stat: string): number | null {
  const close = stat.lastIndexOf(')');
  if (close < 0) return null;
  const f = stat.slice(close + 2).split(' ');
  // After comm: state is field 3; utime and stime are fields 14 and 15 (indexes 11, 12 here).
  const utime = Number(f[11]); const stime = Number(f[12]);
  return Number.isFinite(utime) && Number.isFinite(stime) ? (utime + stime) / CLK_TCK : null;
}

/** Parse write_bytes out of /proc/PID/io. */
export function writeBytesFromIo(io: string): number | null {
  const m = /^write_bytes:\s*(\d+)$/m.exec(io);
  return m ? Number(m[1]) : null;
}

/** The heartbeat of qemu `pid`, or null when that pid is not (or no longer) a qemu. */
export async function heartbeatOf(pid: number): Promise<Heartbeat | null> {
  if (!Number.isInteger(pid) || pid <= 1) return null;
  const [stat, comm, io] = await Promise.all([
    readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null),
    readFile(`/proc/${pid}/comm`, 'utf8').catch(() => ''),
    readFile(`/proc/${pid}/io`, 'utf8').catch(() => null),
  ]);
  // A recycled pid must not lend another process's numbers to the job.
  if (!stat || !comm.startsWith('qemu')) return null;
  const cpu = cpuSecondsFromStat(stat);
  if (cpu === null) return null;
  return { cpuSeconds: Math.round(cpu * 100) / 100, diskWriteBytes: io ? writeBytesFromIo(io) : null, at: new Date().toISOString() };
}
