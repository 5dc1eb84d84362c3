import { describe, expect, it } from 'vitest';
import { kernelCmdline, qemuArgs, type VmSpec } from '../../../src/vm/qemu-args.js';
import { launchArgv } from '../../../src/vm/launch.js';

const spec: VmSpec = {
  accel: 'tcg', memoryMiB: 1024, cpus: 2,
  kernel: '/b/vmlinuz', initrd: '/b/initrd.img', rootImage: '/b/root.img', jobImage: '/q/.running/id/work.img',
  cmdline: kernelCmdline({ nonce: 'abc123', init: 'construir' }), network: 'off', sandbox: true,
};

describe('qemu argv builder', () => {
  it('builds the whole command line as data (snapshot)', () => {
    expect(qemuArgs(spec)).toMatchInlineSnapshot(`
      [
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-monitor",
        "none",
        "-no-reboot",
        "-machine",
        "pc,accel=tcg",
        "-cpu",
        "max",
        "-m",
        "1024",
        "-smp",
        "2",
        "-kernel",
        "/b/vmlinuz",
        "-initrd",
        "/b/initrd.img",
        "-append",
        "console=ttyS0 quiet panic=-1 root=/dev/vda rw construir.nonce=abc123 init=/usr/sbin/construir",
        "-add-fd",
        "fd=3,set=1,opaque=root-ro",
        "-add-fd",
        "fd=4,set=2,opaque=job-rw",
        "-add-fd",
        "fd=5,set=2,opaque=job-ro",
        "-drive",
        "file=/dev/fdset/1,format=raw,if=virtio,snapshot=on,werror=report,rerror=report",
        "-drive",
        "file=/dev/fdset/2,format=raw,if=virtio,discard=unmap,werror=report,rerror=report",
        "-chardev",
        "stdio,id=console,signal=off",
        "-serial",
        "chardev:console",
        "-nic",
        "none",
        "-sandbox",
        "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
      ]
    `);
  });

  it('never puts a disk path on the command line: hostile or comma-laden paths cannot inject options', () => {
    const args = qemuArgs({ ...spec, rootImage: '/b/x,format=qcow2,file=/etc/shadow', jobImage: '/q/-rf,,evil' });
    expect(args.join(' ')).not.toContain('/etc/shadow');
    expect(args.join(' ')).not.toContain('evil');
  });

  it('always declares format=raw for both disks (no probing of untrusted bytes)', () => {
    const drives = qemuArgs(spec).filter((_, i, a) => a[i - 1] === '-drive');
    expect(drives).toHaveLength(2);
    for (const d of drives) expect(d).toContain(',format=raw,');
    expect(drives[0]).toContain('snapshot=on');
    expect(drives[1]).not.toContain('snapshot');
  });

  it('uses the host CPU under KVM, adds a NIC only when asked, and can drop the sandbox', () => {
    const a = qemuArgs({ ...spec, accel: 'kvm', network: 'user', sandbox: false });
    expect(a).toContain('pc,accel=kvm');
    expect(a[a.indexOf('-cpu') + 1]).toBe('host');
    expect(a[a.indexOf('-nic') + 1]).toBe('user,model=virtio-net-pci');
    expect(a).not.toContain('-sandbox');
  });

  it('selects systemd for a full boot', () => {
    expect(kernelCmdline({ nonce: 'n', init: 'systemd' })).toEqual(expect.arrayContaining(['init=/lib/systemd/systemd', 'construir.mode=systemd']));
  });

  it('wraps qemu in setpriv so it dies with the service, and drops privileges when asked', () => {
    expect(launchArgv({ qemuBinary: 'qemu-system-x86_64', spec }).slice(0, 5)).toEqual(['setpriv', '--pdeathsig', 'KILL', '--', 'qemu-system-x86_64']);
    const dropped = launchArgv({ qemuBinary: 'q', spec, runAs: { uid: 998, gid: 997 } });
    expect(dropped).toEqual(expect.arrayContaining(['--reuid=998', '--regid=997', '--clear-groups', '--no-new-privs']));
    expect(dropped.indexOf('--')).toBeLessThan(dropped.indexOf('q'));
  });
});
