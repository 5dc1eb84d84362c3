// The unshare Runner (--isolation unshare): the prepared job runs in a bubblewrap sandbox on the
// host kernel (src/unshare/run.ts) instead of a VM, with the VM's contract and outcome shape, so
// the lifecycle publishes its result exactly as a VM's (accel "unshare"). The operator picks it
// per service (config); a job never can.
import type { Settings } from '../config.js';
import { runJobUnshare, type UnshareSettings } from '../unshare/run.js';
import { unshareJobId } from '../unshare/sweep.js';
import type { Runner } from './runner.js';

/** A Runner for the spool whose queue is `settings.queue`: its sandboxes are named per spool (start-up sweeps only its own). */
export function unshareRunner(settings: UnshareSettings & Pick<Settings, 'queue'>): Runner {
  return {
    kind: 'unshare',
    run: (req) => {
      return runJobUnshare({
        // Derived base layers (build dependencies): ext4 layers made for this isolation (job/deps.ts).
        rootLayers: req.rootLayers,
        image: req.image, base: req.base, settings: { ...settings, memory: req.settings.memory, cpus: req.settings.cpus, timeout: req.settings.timeout },
        logPath: req.logPath, signal: req.signal, onSpawn: req.onSpawn,
        // A claim names the sandbox by its job id; without one (a direct run) a random id is used.
        id: req.job ? unshareJobId(settings.queue, req.job.id) : undefined,
      });
    },
  };
}
