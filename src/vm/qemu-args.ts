// The qemu command line as data: one small pure function per group of flags, each returning
// string[]. Never a shell string. Snapshot-tested in test/unit/vm/qemu-args.test.ts.

export type Accel = 'kvm' | 'tcg';

export interface VmSpec {
  accel: Accel;
  memoryMiB: number;
  cpus: number;
  kernel: string;
  initrd: string;
  /** Base root filesystem, opened read-only by the launcher (snapshot=on: writes go to a temp overlay). */
  rootImage: string;
  /** The job image, opened read-write by the launcher: the only writable disk. */
  jobImage: string;
  /** Kernel command line words, already including the marker nonce. */
  cmdline: string[];
  network: 'off' | 'user';
  /**
   * Root layers: qcow2 files over rootImage, bottom first (derived base layers, templates). Each is
   * opened by the launcher and reaches qemu as an fd, its backing given as a node (never a path
   * from the qcow2 header). Absent or empty: the raw root alone.
   */
  rootLayers?: string[];
  /** Write into the top root layer instead of a throwaway snapshot (building a layer). */
  rootWritable?: boolean;
  /** Seccomp sandbox (-sandbox on with the deny options). */
  sandbox: boolean;
}

/** No default devices, no config files, no display, no monitor: only what we add below exists. */
export function baseArgs(): string[] {
  return ['-nodefaults', '-no-user-config', '-display', 'none', '-monitor', 'none', '-no-reboot'];
}

/** Machine type, accelerator, CPU model, memory and vCPUs. */
export function machineArgs(spec: Pick<VmSpec, 'accel' | 'memoryMiB' | 'cpus'>): string[] {
  return [
    '-machine', `pc,accel=${spec.accel}`,
    '-cpu', spec.accel === 'kvm' ? 'host' : 'max',
    '-m', String(spec.memoryMiB),
    '-smp', String(spec.cpus),
  ];
}

/** Direct kernel boot with the base image's kernel and initrd. */
export function bootArgs(spec: Pick<VmSpec, 'kernel' | 'initrd' | 'cmdline'>): string[] {
  return ['-kernel', spec.kernel, '-initrd', spec.initrd, '-append', spec.cmdline.join(' ')];
}

/** File descriptors the launcher hands qemu: it opens the disks, qemu never resolves their paths. */
export const DISK_FDS = { root: 3, jobRw: 4, jobRo: 5 } as const;

/**
 * Descriptors of the root layers, after the three above: layer i (0 = the one right over root.img)
 * read-only at 6+i, then the top layer read-write at 6+n when rootWritable. The launcher opens
 * them in this order.
 */
export function layerFds(spec: Pick<VmSpec, 'rootLayers' | 'rootWritable'>): { ro: number[]; rw: number | null } {
  const n = spec.rootLayers?.length ?? 0;
  const ro = Array.from({ length: n }, (_, i) => 6 + i);
  return { ro, rw: n > 0 && spec.rootWritable ? 6 + n : null };
}

/**
 * Root disk first (vda), job disk second (vdb), both passed as inherited file descriptors
 * (fdsets), so an unprivileged qemu needs no access to the spool or the base image's directory.
 * Both are format=raw so qemu never probes a format from untrusted bytes; the root disk is a
 * snapshot (writes go to a temp overlay); the job disk reports write errors to the guest instead
 * of pausing, and passes discards through so trimmed space becomes holes in the host file.
 * The job's fdset holds a read-write and a read-only descriptor: qemu opens both modes.
 */
export function diskArgs(spec: Pick<VmSpec, 'rootLayers' | 'rootWritable'> = {}): string[] {
  return [
    '-add-fd', `fd=${DISK_FDS.root},set=1,opaque=root-ro`,
    '-add-fd', `fd=${DISK_FDS.jobRw},set=2,opaque=job-rw`,
    '-add-fd', `fd=${DISK_FDS.jobRo},set=2,opaque=job-ro`,
    ...rootDiskArgs(spec),
    '-drive', 'file=/dev/fdset/2,format=raw,if=virtio,discard=unmap,werror=report,rerror=report',
  ];
}

/**
 * The root disk (vda). Without layers: root.img, raw, snapshot. With layers: root.img and every
 * layer but the top as read-only -blockdev nodes, each qcow2 naming its backing node explicitly
 * (qemu then never opens the backing path written in a qcow2 header, which an unprivileged qemu
 * could not reach anyway), and the top layer as the drive: snapshot unless rootWritable.
 * Layer i (bottom first) is fdset 3+i.
 */
export function rootDiskArgs(spec: Pick<VmSpec, 'rootLayers' | 'rootWritable'>): string[] {
  const layers = spec.rootLayers ?? [];
  if (layers.length === 0) {
    if (spec.rootWritable) throw new Error('rootWritable needs a root layer to write into');
    return ['-drive', 'file=/dev/fdset/1,format=raw,if=virtio,snapshot=on,werror=report,rerror=report'];
  }
  const fds = layerFds(spec);
  const args: string[] = [];
  layers.forEach((_, i) => {
    args.push('-add-fd', `fd=${fds.ro[i]},set=${3 + i},opaque=layer${i + 1}-ro`);
    if (i === layers.length - 1 && fds.rw !== null) args.push('-add-fd', `fd=${fds.rw},set=${3 + i},opaque=layer${i + 1}-rw`);
  });
  args.push('-blockdev', 'driver=file,node-name=root0-file,filename=/dev/fdset/1,read-only=on',
    '-blockdev', 'driver=raw,node-name=root0,file=root0-file,read-only=on');
  for (let i = 0; i < layers.length - 1; i++) {
    args.push('-blockdev', `driver=file,node-name=root${i + 1}-file,filename=/dev/fdset/${3 + i},read-only=on`,
      '-blockdev', `driver=qcow2,node-name=root${i + 1},file=root${i + 1}-file,backing=root${i},read-only=on`);
  }
  const top = 3 + layers.length - 1;
  args.push('-drive', `file=/dev/fdset/${top},format=qcow2,backing=root${layers.length - 1},if=virtio,` +
    `${spec.rootWritable ? '' : 'snapshot=on,'}werror=report,rerror=report`);
  return args;
}

/** The serial console on qemu's stdout (the host reads it through a pipe). */
export function consoleArgs(): string[] {
  return ['-chardev', 'stdio,id=console,signal=off', '-serial', 'chardev:console'];
}

/** No NIC unless asked; 'user' is qemu's user-mode NAT (no host privileges needed). */
export function networkArgs(spec: Pick<VmSpec, 'network'>): string[] {
  if (spec.network === 'off') return ['-nic', 'none'];
  return ['-nic', 'user,model=virtio-net-pci'];
}

/** Seccomp: deny what a VM never needs (obsolete syscalls, privilege changes, spawning, resource games). */
export function sandboxArgs(spec: Pick<VmSpec, 'sandbox'>): string[] {
  if (!spec.sandbox) return [];
  return ['-sandbox', 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny'];
}

/** The whole argv (without the qemu binary itself). */
export function qemuArgs(spec: VmSpec): string[] {
  return [
    ...baseArgs(),
    ...machineArgs(spec),
    ...bootArgs(spec),
    ...diskArgs(spec),
    ...consoleArgs(),
    ...networkArgs(spec),
    ...sandboxArgs(spec),
  ];
}

/** Kernel command line for a job boot; `init` selects construir as PID 1 or a full systemd boot. */
export function kernelCmdline(opts: { nonce: string; init: 'construir' | 'systemd' }): string[] {
  const words = ['console=ttyS0', 'quiet', 'panic=-1', 'root=/dev/vda', 'rw', `construir.nonce=${opts.nonce}`];
  if (opts.init === 'systemd') words.push('init=/lib/systemd/systemd', 'construir.mode=systemd');
  else words.push('init=/usr/sbin/construir');
  return words;
}
