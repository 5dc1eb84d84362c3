// What the service and the node-side command (`jobrunner node-run CLAIM_DIR`) tell each other
// through the claim directory on the shared spool: the service writes node-request.json before
// sbatch; the node writes outcome.json (atomically) when the VM has ended. The claim directory is
// the service's (queue/.running/<id>/, never writable by submitters), so both files are trusted.
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../fsutil.js';
import type { VmRunOutcome, VmRunSettings } from '../job/vm-run.js';

export const REQUEST_FILE = 'node-request.json';
export const OUTCOME_FILE = 'outcome.json';

/** Everything the node needs to boot the claimed work image exactly as the local backend does. */
export interface NodeRequest {
  protocol: 1;
  jobId: string;
  /** Base image: its directory (on the shared filesystem) and name. */
  baseImageDir: string;
  baseImage: string;
  settings: VmRunSettings & { runAs: string };
  /** deps (issue 11): derived base layers (qcow2, in the deps cache on the shared filesystem), bottom first. */
  rootLayers?: string[];
}

/** What the node reports back: the VM's outcome and where it ran. */
export interface NodeOutcome {
  protocol: 1;
  jobId: string;
  slurmJobId: number | null;
  node: string;
  host: string;
  startedAt: string;
  finishedAt: string;
  outcome: VmRunOutcome;
}

export async function writeRequest(claimDir: string, r: NodeRequest): Promise<void> {
  await rm(path.join(claimDir, OUTCOME_FILE), { force: true });
  await writeFileAtomic(path.join(claimDir, REQUEST_FILE), JSON.stringify(r, null, 2) + '\n');
}

export async function readRequest(claimDir: string): Promise<NodeRequest> {
  const r = JSON.parse(await readFile(path.join(claimDir, REQUEST_FILE), 'utf8')) as NodeRequest;
  if (r.protocol !== 1) throw new Error(`${REQUEST_FILE}: unknown protocol ${String(r.protocol)}`);
  return r;
}

export async function writeOutcome(claimDir: string, o: NodeOutcome): Promise<void> {
  await writeFileAtomic(path.join(claimDir, OUTCOME_FILE), JSON.stringify(o, null, 2) + '\n');
}

/**
 * The node's outcome for this job, or null when none was written, or it names another job, or
 * (given `slurmJobId`) another Slurm job: a node-run left from an earlier attempt must not speak
 * for this one.
 */
export async function readOutcome(claimDir: string, jobId: string, slurmJobId?: number): Promise<NodeOutcome | null> {
  try {
    const o = JSON.parse(await readFile(path.join(claimDir, OUTCOME_FILE), 'utf8')) as NodeOutcome;
    if (slurmJobId !== undefined && o.slurmJobId !== slurmJobId) return null;
    return o.protocol === 1 && o.jobId === jobId && typeof o.outcome?.end === 'string' ? o : null;
  } catch {
    return null;
  }
}
