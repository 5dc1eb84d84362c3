import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { chooseAccel, probeKvm } from '../../../src/vm/accel.js';

describe('accelerator choice', () => {
  it('uses KVM only with CPU flags and an openable /dev/kvm', () => {
    expect(chooseAccel('auto', { cpuFlags: true, devKvm: true }).accel).toBe('kvm');
    const noFlags = chooseAccel('auto', { cpuFlags: false, devKvm: true });
    expect(noFlags).toMatchObject({ accel: 'tcg', degraded: true });
    expect(noFlags.reason).toMatch(/vmx\/svm/);
    expect(chooseAccel('auto', { cpuFlags: true, devKvm: false }).reason).toMatch(/\/dev\/kvm/);
    expect(chooseAccel('tcg', { cpuFlags: true, devKvm: true })).toMatchObject({ accel: 'tcg', degraded: false });
  });

  it('refuses --accel kvm without KVM instead of silently using TCG', () => {
    expect(() => chooseAccel('kvm', { cpuFlags: false, devKvm: true })).toThrow(/KVM is not usable: the CPU has no vmx\/svm flag/);
  });

  it('reads flags from cpuinfo and does not trust the device file alone', async () => {
    const d = await mkdtemp(path.join(os.tmpdir(), 'accel-'));
    await writeFile(path.join(d, 'cpuinfo'), 'processor : 0\nflags : fpu vme sse2 svm lm\n');
    await writeFile(path.join(d, 'kvm'), '');
    expect(await probeKvm(path.join(d, 'cpuinfo'), path.join(d, 'kvm'))).toEqual({ cpuFlags: true, devKvm: true });
    await writeFile(path.join(d, 'cpuinfo'), 'processor : 0\nflags : fpu vme sse2 lm\n');
    expect(await probeKvm(path.join(d, 'cpuinfo'), path.join(d, 'missing'))).toEqual({ cpuFlags: false, devKvm: false });
  });
});
