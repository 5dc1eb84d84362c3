// Accelerator choice. /dev/kvm existing proves nothing (here it belongs to a paravirtual host and a
// guest hangs at "Booting from ROM"): KVM needs the CPU flags (vmx/svm) AND a /dev/kvm we can open.
// Even then the launcher's boot watchdog gets the last word (see job/vm-run.ts fallback).
import { open, readFile } from 'node:fs/promises';
import { constants } from 'node:fs';
import { JrError } from '../errors.js';
import type { Accel } from './qemu-args.js';

export type AccelRequest = 'auto' | 'kvm' | 'tcg';

export interface AccelProbe {
  cpuFlags: boolean;
  devKvm: boolean;
}

export interface AccelChoice {
  accel: Accel;
  /** Why this accelerator was chosen; shown to the operator (a warning when it is TCG by necessity). */
  reason: string;
  /** True when TCG was chosen although KVM was wanted or would have been preferred. */
  degraded: boolean;
}

/** Look at the CPU flags and try to open /dev/kvm read-write. */
export async function probeKvm(cpuinfo = '/proc/cpuinfo', dev = '/dev/kvm'): Promise<AccelProbe> {
  let cpuFlags = false;
  try {
    const text = await readFile(cpuinfo, 'utf8');
    cpuFlags = /^flags\s*:.*\b(vmx|svm)\b/m.test(text);
  } catch { /* no cpuinfo: no KVM */ }
  let devKvm = false;
  try {
    const fh = await open(dev, constants.O_RDWR);
    await fh.close();
    devKvm = true;
  } catch { /* absent or no permission */ }
  return { cpuFlags, devKvm };
}

/** Pure decision from a probe: `kvm` requested without KVM is a configuration error, not a slow run. */
export function chooseAccel(request: AccelRequest, probe: AccelProbe): AccelChoice {
  const usable = probe.cpuFlags && probe.devKvm;
  const why = !probe.cpuFlags ? 'the CPU has no vmx/svm flag' : !probe.devKvm ? '/dev/kvm cannot be opened read-write' : '';
  if (request === 'tcg') return { accel: 'tcg', reason: 'TCG requested (--accel tcg)', degraded: false };
  if (request === 'kvm') {
    if (!usable) throw new JrError('JR_E_CONFIG', `--accel kvm was requested but KVM is not usable: ${why}`);
    return { accel: 'kvm', reason: 'KVM requested and available', degraded: false };
  }
  if (usable) return { accel: 'kvm', reason: 'KVM available (vmx/svm and /dev/kvm)', degraded: false };
  return { accel: 'tcg', reason: `KVM not usable (${why}); using TCG software emulation, expect jobs to run 10-50x slower`, degraded: true };
}
