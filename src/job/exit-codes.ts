// Exit codes of `jobrunner run` when the job's own status is not available. Documented in --help;
// a job can of course exit with these numbers itself — the console and the log tell them apart.
import type { VmEnd } from '../vm/launch.js';

export const EXIT = {
  /** The guest never showed a sign of life (boot watchdog), or qemu could not start it. */
  bootFailed: 121,
  /** The job image was refused before boot, or the guest could not mount it. */
  badImage: 122,
  /** The guest stopped without reporting the job's exit status (crash, panic, job killed init). */
  crashed: 123,
  /** The job ran past --timeout (as timeout(1)). */
  timeout: 124,
  /** jobrunner itself failed: usage, configuration, base image, internal error. */
  runnerError: 125,
  /** Interrupted (SIGINT/SIGTERM) before the job finished. */
  interrupted: 130,
} as const;

/** The process exit code for a VM outcome. */
export function exitCodeFor(end: VmEnd, jobExit: number | null): number {
  switch (end) {
    case 'exited': return jobExit ?? EXIT.crashed;
    case 'timeout': return EXIT.timeout;
    case 'bad-image': return EXIT.badImage;
    case 'boot-failed': return EXIT.bootFailed;
    case 'aborted': return EXIT.interrupted;
    case 'crashed': case 'killed': return EXIT.crashed;
  }
}
