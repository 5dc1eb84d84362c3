// The unshare Runner (--isolation unshare): the prepared job runs in a bubblewrap sandbox on the
// host kernel (src/unshare/run.ts) instead of a VM, with the VM's contract and outcome shape, so
// the lifecycle publishes its result exactly as a VM's (accel "unshare"). The operator picks it
// per service (config); a job never can.
import type { Settings } from '../config.js';
import { JrError } from '../errors.js';
import { runJobUnshare, type UnshareSettings } from '../unshare/run.js';
import { unshareJobId } from '../unshare/sweep.js';
import type { Runner } from './runner.js';

/** A Runner for the spool whose queue is `settings.queue`: its sandboxes are named per spool (start-up sweeps only its own). */
export function unshareRunner(settings: UnshareSettings & Pick<Settings, 'queue'>): Runner {
  return {
    kind: 'unshare',
    run: (req) => {
      // Derived base layers (build dependencies, issue 11) are qcow2 overlays for the VM; not here yet.
      if ((req.rootLayers?.length ?? 0) > 0) {
        return Promise.reject(new JrError('JR_E_CONFIG', '--isolation unshare does not run jobs with build dependencies (derived base layers) yet: use --isolation vm'));
      }
      return runJobUnshare({
        image: req.image, base: req.base, settings: { ...settings, memory: req.settings.memory, cpus: req.settings.cpus, timeout: req.settings.timeout },
        logPath: req.logPath, signal: req.signal, onSpawn: req.onSpawn,
        // A claim names the sandbox by its job id; without one (a direct run) a random id is used.
        id: req.job ? unshareJobId(settings.queue, req.job.id) : undefined,
      });
    },
  };
}
