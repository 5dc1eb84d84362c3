// The seam between a job's lifecycle and what runs it. The lifecycle prepares a work image (a
// private sparse copy of the submission) and picks a base; a Runner runs the job's construir
// against them and says how it ended. The qemu VM (job/vm-run.ts) is the first Runner; another
// way of isolating a job (bubblewrap, a restored VM snapshot) is another Runner; another place to
// run it (Slurm) is a Runner that ships the request there. See docs/ARCHITECTURE.md.
import type { BaseImage } from '../image/base.js';
import type { RunAs } from '../run-as.js';
import type { RemoteRun } from '../spool/claim.js';
import { runJobVm, type AccelState, type VmRunOutcome, type VmRunSettings } from './vm-run.js';

/** One run of one prepared job: everything a Runner may use, and nothing else. */
export interface RunRequest {
  /** The work image, writable by `runAs`; the runner leaves the job's results in it. */
  image: string;
  base: BaseImage;
  settings: VmRunSettings;
  /** Where the job's console goes (capped at settings.logCap). */
  logPath: string | null;
  /** Scratch directory of this run, removed by the lifecycle afterwards. */
  tmpDir: string;
  runAs?: RunAs;
  /** Shutdown or cancel: stop the run; the outcome is then `aborted` (requeued unless cancelled). */
  signal: AbortSignal;
  /** Cancel alone (also part of `signal`): runners that ship the run elsewhere must end it there too. */
  cancel?: AbortSignal;
  /** The pid to record in the lease (killed at start-up if a crashed service left it running). */
  onSpawn?: (pid: number) => void;
  /**
   * The claim, for runners that ship the run elsewhere (Slurm): its id and directory, the remote
   * run its lease already names (re-attach after a restart), and where to record a new one.
   */
  job?: { id: string; dir: string; remote: RemoteRun | null; onRemote: (r: RemoteRun) => void };
  /** deps (issue 11): derived base layers, bottom first: qcow2 over root.img (VM) or ext4 upper layers (unshare). */
  rootLayers?: string[];
  /** For the operator: a restore fell back to a cold boot (warning); a template is being built (note). */
  onWarning?: (msg: string) => void;
  onNote?: (msg: string) => void;
  /** false (the service): never make the job wait for a template build; it boots cold meanwhile. */
  awaitTemplate?: boolean;
}

/**
 * How a run ended. Every runner fills the VM's outcome shape (end, exitCode, reason, timings,
 * console facts); the lifecycle turns it into a verdict (lifecycle.verdictOf).
 */
export type RunOutcome = VmRunOutcome & {
  /** Not the job's doing (a node failed, the job never ran there): run it again, as a new attempt. */
  requeue?: string;
  /** Where it ran, for the record. */
  runner?: { backend: 'local' | 'slurm'; node: string | null; slurmJobId: number | null };
};

/** Runs prepared jobs. `kind` names it in logs and docs ('qemu', ...). */
export interface Runner {
  readonly kind: string;
  run(req: RunRequest): Promise<RunOutcome>;
}

/** The qemu runner: a fresh VM per job, falling back from KVM to TCG once (see vm-run.ts). */
export function vmRunner(accel: AccelState): Runner {
  return { kind: 'qemu', run: (req) => runJobVm(req, accel) };
}
