// launchVm's outcome policy (classifyEnd): what was observed of a VM run -> how it ended and why.
import { describe, expect, it } from 'vitest';
import { classifyEnd, type EndFacts } from '../../../src/vm/launch.js';

const ran: EndFacts = {
  killedFor: null, exitCode: null, clean: false, badImage: null, initramfsFailure: null, bootMs: 900, lastLine: 'building',
  qemuExitCode: 0, qemuSignal: null, stderrTail: '',
};
const noBoot: EndFacts = { ...ran, bootMs: null, lastLine: '' };
const timeout = { end: 'timeout' as const, reason: 'the job ran past its 60s limit' };

describe('classifyEnd', () => {
  it('an exit marker is the job\'s status; clean only with the end marker', () => {
    expect(classifyEnd({ ...ran, exitCode: 0, clean: true })).toEqual({ end: 'exited', exitCode: 0, clean: true, reason: 'the job succeeded' });
    expect(classifyEnd({ ...ran, exitCode: 7 })).toEqual({ end: 'exited', exitCode: 7, clean: false, reason: 'the job exited with status 7' });
  });

  it('our timeout or abort wins over an exit marker seen just before (the image may be mid-write)', () => {
    expect(classifyEnd({ ...ran, exitCode: 0, clean: true, killedFor: timeout })).toEqual({ end: 'timeout', exitCode: null, clean: false, reason: timeout.reason });
    expect(classifyEnd({ ...ran, killedFor: { end: 'aborted', reason: 'stopped' } })).toMatchObject({ end: 'aborted', reason: 'stopped' });
  });

  it('a boot watchdog kill loses to an exit or bad-image marker that arrived anyway, and wins over everything else', () => {
    const boot = { end: 'boot-failed' as const, reason: 'no sign of life from the guest within 3s' };
    expect(classifyEnd({ ...noBoot, killedFor: boot, exitCode: 0 })).toMatchObject({ end: 'exited', exitCode: 0 });
    expect(classifyEnd({ ...noBoot, killedFor: boot, badImage: 'no-disk' })).toMatchObject({ end: 'bad-image' });
    expect(classifyEnd({ ...noBoot, killedFor: boot, qemuSignal: 'SIGTERM' })).toEqual({ end: 'boot-failed', exitCode: null, clean: false, reason: boot.reason });
  });

  it('bad-image names the guest\'s reason', () => {
    expect(classifyEnd({ ...ran, badImage: 'mount-failed' }).reason).toBe('the guest could not use the job image (mount-failed): not a mountable ext2/3/4 filesystem');
  });

  it('a signal from outside (or qemu\'s own "terminating on signal") is killed, before or during the job', () => {
    expect(classifyEnd({ ...ran, qemuSignal: 'SIGKILL', qemuExitCode: null })).toMatchObject({ end: 'killed',
      reason: "qemu was killed by SIGKILL from outside jobrunner (an operator or the host's OOM killer), while the job ran" });
    expect(classifyEnd({ ...noBoot, stderrTail: 'qemu-system-x86_64: terminating on signal 15 from pid 12', qemuExitCode: 0 }))
      .toMatchObject({ end: 'killed', reason: expect.stringMatching(/by signal 15 from outside jobrunner .*before the guest started$/) });
  });

  it('a fault signal is a crash: boot-failed before start, crashed after', () => {
    expect(classifyEnd({ ...noBoot, qemuSignal: 'SIGSEGV', qemuExitCode: null })).toMatchObject({ end: 'boot-failed', reason: 'qemu crashed (SIGSEGV) before the guest started' });
    expect(classifyEnd({ ...ran, qemuSignal: 'SIGABRT', qemuExitCode: null })).toEqual({ end: 'crashed', exitCode: null, clean: false,
      reason: 'the guest stopped without reporting an exit status (qemu crashed: SIGABRT); last console line: building' });
  });

  it('the initramfs failure line is a boot failure with its reason', () => {
    expect(classifyEnd({ ...noBoot, initramfsFailure: 'no-root-disk' })).toMatchObject({ end: 'boot-failed', reason: 'the guest failed to boot: no-root-disk' });
  });

  it('qemu ending before the guest started: its last three stderr lines, else its exit status', () => {
    expect(classifyEnd({ ...noBoot, qemuExitCode: 1, stderrTail: 'a\nb\nc\nd' }).reason).toBe('qemu failed: b | c | d');
    expect(classifyEnd({ ...noBoot, qemuExitCode: 1 }).reason).toBe('qemu ended (exit 1) before the guest started');
  });

  it('a guest that stops after start without an exit marker has crashed, with the last console line', () => {
    expect(classifyEnd({ ...ran, lastLine: '' })).toMatchObject({ end: 'crashed',
      reason: 'the guest stopped without reporting an exit status (qemu exit 0); last console line: (none)' });
  });
});
