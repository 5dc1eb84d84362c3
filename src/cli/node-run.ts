// `jobrunner node-run CLAIM_DIR`: the node side of the Slurm backend. Started by Slurm (sbatch) on
// a build host that sees the same spool and base images; boots the claim's work image exactly as
// the local backend does and leaves the outcome (and where it ran) in the claim directory.
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { JrError, messageOf } from '../errors.js';
import { loadBaseImage } from '../image/base.js';
import { handOver, resolveRunAs } from '../run-as.js';
import { AccelState, runJobVm } from '../job/vm-run.js';
import { claimPaths } from '../spool/claim.js';
import { readRequest, writeOutcome } from '../slurm/protocol.js';

const HELP = `Usage: jobrunner node-run CLAIM_DIR

The node-side command of --backend slurm (the service submits it with sbatch; not for use by
hand). Boots CLAIM_DIR/work.img on the base image named in CLAIM_DIR/node-request.json, exactly as
the local backend would, keeps the console in CLAIM_DIR/console.log and writes the outcome, the
node's name and timings to CLAIM_DIR/outcome.json. SIGTERM (scancel) kills the VM.
Exit status: 0 when an outcome was written, 125 otherwise.
`;

/** Entry point of `jobrunner node-run`; returns the process exit code. */
export async function nodeRunMain(argv: string[]): Promise<number> {
  if (argv.includes('-h') || argv.includes('--help')) { process.stdout.write(HELP); return 0; }
  if (argv.length !== 1) throw new JrError('JR_E_USAGE', `Expected exactly one CLAIM_DIR, got ${argv.length} (see jobrunner node-run --help)`);
  const dir = path.resolve(argv[0]!);
  const req = await readRequest(dir).catch((e: unknown) => { throw new JrError('JR_E_USAGE', `${dir} is not a claim prepared for a node: ${messageOf(e)}`); });
  const paths = claimPaths(dir);
  const work = await stat(paths.work).catch(() => null);
  if (!work?.isFile()) throw new JrError('JR_E_USAGE', `${paths.work} is missing: the service prepares it before submitting`);
  const startedAt = new Date().toISOString();
  const base = await loadBaseImage(req.baseImageDir, req.baseImage);
  const runAs = await resolveRunAs(req.settings.runAs);
  // deps (issue 11): the derived layers live in the service's deps cache, which nodes must share.
  for (const l of req.rootLayers ?? []) {
    if (!(await stat(l).catch(() => null))?.isFile()) throw new JrError('JR_E_CONFIG', `derived base layer ${l} is not readable on this node: put --deps-cache on the filesystem the nodes share`);
  }
  const abort = new AbortController();
  const onSignal = (): void => abort.abort();
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  const tmpDir = await mkdtemp(path.join(os.tmpdir(), `jobrunner-node-${req.jobId}-`));
  try {
    await handOver(runAs, [paths.work, tmpDir]);
    const outcome = await runJobVm({ image: paths.work, base, settings: req.settings, rootLayers: req.rootLayers, logPath: paths.log, tmpDir, runAs, signal: abort.signal },
      new AccelState(req.settings.accel));
    await writeOutcome(dir, {
      protocol: 1, jobId: req.jobId, slurmJobId: process.env.SLURM_JOB_ID ? Number(process.env.SLURM_JOB_ID) : null,
      node: process.env.SLURMD_NODENAME ?? os.hostname(), host: os.hostname(), startedAt, finishedAt: new Date().toISOString(), outcome,
    });
    process.stderr.write(`jobrunner node-run: ${req.jobId}: ${outcome.end}: ${outcome.reason}\n`);
    return 0;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    await rm(tmpDir, { recursive: true, force: true }).catch(() => undefined);
  }
}
