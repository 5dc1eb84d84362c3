// The suite's three figures, computed from what really happened (never hard-coded):
//   jobs lost            submitted entries with no status (and no longer in the queue where a
//                        dotfile is expected to stay), plus entries with more than one status;
//   host files modified  sentinel host files whose fingerprint changed between before and after;
//   qemu left            qemu (or fake qemu) processes still holding spool files after a kill.
import { lstat, readdir } from 'node:fs/promises';
import path from 'node:path';
import { allStatuses, sha256, type Spool } from './spool.js';
import { holdsFilesUnder } from '../../../src/procfs.js';

export interface Fingerprint { sha256: string | null; size: number; mtimeMs: number; ctimeMs: number; nlink: number; mode: number; uid: number }

/** sha256 (unless `hash` is false: a 4 GiB sparse root image takes half a minute) + stat of a file. */
export async function fingerprint(file: string, hash = true): Promise<Fingerprint> {
  const st = await lstat(file);
  return {
    sha256: hash && st.isFile() ? await sha256(file) : null,
    size: st.size, mtimeMs: st.mtimeMs, ctimeMs: hash ? 0 : st.ctimeMs, nlink: st.nlink, mode: st.mode, uid: st.uid,
  };
}

interface Expectation { spool: Spool; submitted: string; stays?: string }

export class Ledger {
  private readonly expected: Expectation[] = [];
  private readonly sentinels = new Map<string, { before: Fingerprint; hash: boolean }>();
  private readonly qemuCounts: Array<{ where: string; pids: number[] }> = [];
  private readonly audits: Array<{ spool: string; lost: string[]; duplicated: string[] }> = [];

  /** An entry that must end with exactly one status (`submitted` as the status will show it). */
  expectResult(spool: Spool, submitted: string): void {
    this.expected.push({ spool, submitted });
  }

  /** An entry the service must leave where it is (a dotfile: an upload in progress by convention). */
  expectStays(spool: Spool, file: string): void {
    this.expected.push({ spool, submitted: file, stays: path.join(spool.queue, file) });
  }

  /** Remember a host file's fingerprint now; `audit` compares at the end. */
  async watchSentinel(file: string, hash = true): Promise<void> {
    if (!this.sentinels.has(file)) this.sentinels.set(file, { before: await fingerprint(file, hash), hash });
  }

  /** Record the processes still holding spool files after a kill (the figure sums them). */
  recordQemuLeft(where: string, pids: number[]): void {
    this.qemuCounts.push({ where, pids });
  }

  /** Check one spool's expectations (call when its runs are over); a name expected n times needs n statuses. */
  async auditSpool(spool: Spool): Promise<{ lost: string[]; duplicated: string[] }> {
    const statuses = await allStatuses(spool);
    const lost: string[] = [];
    const duplicated: string[] = [];
    const want = new Map<string, number>();
    for (const e of this.expected.filter((x) => x.spool === spool)) {
      if (e.stays) {
        if (!(await lstat(e.stays).then(() => true, () => false))) lost.push(e.submitted);
        continue;
      }
      want.set(e.submitted, (want.get(e.submitted) ?? 0) + 1);
    }
    for (const [name, n] of want) {
      const found = statuses.filter((st) => st.submitted === name).length;
      for (let i = found; i < n; i++) lost.push(name);
      for (let i = n; i < found; i++) duplicated.push(name);
    }
    this.audits.push({ spool: spool.root, lost, duplicated });
    return { lost, duplicated };
  }

  /** Sentinels whose fingerprint differs from the one taken before. */
  async modifiedSentinels(): Promise<string[]> {
    const out: string[] = [];
    for (const [file, { before, hash }] of this.sentinels) {
      const after = await fingerprint(file, hash).catch(() => null);
      if (!after || JSON.stringify(after) !== JSON.stringify(before)) out.push(file);
    }
    return out;
  }

  async figures(): Promise<{ jobsLost: number; hostFilesModified: number; qemuLeft: number; detail: object }> {
    const lost = this.audits.flatMap((a) => [...a.lost, ...a.duplicated]);
    const modified = await this.modifiedSentinels();
    const left = this.qemuCounts.flatMap((q) => q.pids);
    return {
      jobsLost: lost.length, hostFilesModified: modified.length, qemuLeft: left.length,
      detail: { lost, modified, sentinels: this.sentinels.size, audits: this.audits.length, killChecks: this.qemuCounts },
    };
  }
}

/** Pids of processes (any program) with a file descriptor open on something under `dir`. */
export async function processesHolding(dir: string): Promise<number[]> {
  const out: number[] = [];
  for (const p of await readdir('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    if (await holdsFilesUnder(Number(p), dir)) out.push(Number(p));
  }
  return out;
}
