// The qemu command line of a template's boot and of a restore from it, as data. The two must give
// the guest the very same machine and devices (migration refuses or corrupts otherwise), so both
// come from one function; only the block plumbing and the incoming side differ. Every disk reaches
// qemu as an inherited fd (fdsets), the template overlay's backing included (-blockdev with an
// explicit `backing`), so no image path reaches qemu's option parser.
import { DISK_FDS, baseArgs, consoleArgs, networkArgs, sandboxArgs, type Accel } from './qemu-args.js';

/** Fds a template boot / restore hands qemu, after DISK_FDS (root 3, job rw 4, job ro 5). */
export const TEMPLATE_FDS = { overlay: 6, overlayRo: 7, state: 7 } as const;

/** Everything about the VM that a template's saved state depends on (part of its key). */
export interface TemplateShape {
  accel: Accel;
  /** Pinned machine type, e.g. pc-i440fx-7.2: the saved state names it, the restore must match. */
  machine: string;
  memoryMiB: number;
  cpus: number;
  network: 'off' | 'user';
  sandbox: boolean;
}

export interface TemplateFiles { kernel: string; initrd: string; qmpSocket: string }

/** Kernel command line of a template boot: no nonce (it would be cloned into every restore). */
export function templateCmdline(): string[] {
  return ['console=ttyS0', 'quiet', 'panic=-1', 'root=/dev/vda', 'rw', 'init=/usr/sbin/construir', 'construir.start=template'];
}

/** The machine type that qemu's `pc` alias means for qemu `version` (e.g. "7.2.22" -> pc-i440fx-7.2). */
export function pinnedMachine(version: string): string {
  const m = /^(\d+)\.(\d+)/.exec(version);
  if (!m) throw new Error(`Expected a qemu version such as 7.2.22, got ${JSON.stringify(version)}`);
  return `pc-i440fx-${m[1]}.${m[2]}`;
}

/** Machine, devices and console shared by build and restore (the device set must be identical). */
function machineAndDevices(shape: TemplateShape, files: TemplateFiles): string[] {
  return [
    ...baseArgs(),
    '-machine', `${shape.machine},accel=${shape.accel}`,
    '-cpu', shape.accel === 'kvm' ? 'host' : 'max',
    '-m', String(shape.memoryMiB),
    '-smp', String(shape.cpus),
    '-kernel', files.kernel, '-initrd', files.initrd, '-append', templateCmdline().join(' '),
    '-device', 'virtio-blk-pci,drive=root,id=vda,addr=0x4,werror=report,rerror=report',
    // A new generation id on every start: the guest kernel reseeds its RNG when a restore resumes.
    '-device', 'vmgenid,guid=auto',
    ...consoleArgs(),
    ...networkArgs(shape),
    '-qmp', `unix:${files.qmpSocket},server=on,wait=off`,
    ...sandboxArgs(shape),
  ];
}

const rootBase = JSON.stringify({ driver: 'raw', 'node-name': 'base', 'read-only': true, file: { driver: 'file', filename: '/dev/fdset/1' } });

/** Template boot: root = a new qcow2 overlay (written) over the read-only base root.img. */
export function templateBuildArgs(shape: TemplateShape, files: TemplateFiles): string[] {
  return [
    '-add-fd', `fd=${DISK_FDS.root},set=1,opaque=root-ro`,
    '-add-fd', `fd=${TEMPLATE_FDS.overlay},set=3,opaque=overlay-rw`,
    '-add-fd', `fd=${TEMPLATE_FDS.overlayRo},set=3,opaque=overlay-ro`,
    '-blockdev', rootBase,
    '-blockdev', JSON.stringify({ driver: 'qcow2', 'node-name': 'root', backing: 'base', file: { driver: 'file', filename: '/dev/fdset/3' } }),
    ...machineAndDevices(shape, files),
  ];
}

/**
 * Restore: root = a throw-away snapshot (temp file in TMPDIR) over the frozen, read-only template
 * overlay over root.img; the job's fdset is declared but attached only after the state has loaded
 * (QMP blockdev-add + device_add); the state comes in from an inherited read-only fd; -S: the
 * guest stays paused until we `cont`, after the template has been verified and the disk attached.
 */
export function restoreArgs(shape: TemplateShape, files: TemplateFiles): string[] {
  return [
    '-add-fd', `fd=${DISK_FDS.root},set=1,opaque=root-ro`,
    '-add-fd', `fd=${DISK_FDS.jobRw},set=2,opaque=job-rw`,
    '-add-fd', `fd=${DISK_FDS.jobRo},set=2,opaque=job-ro`,
    '-add-fd', `fd=${TEMPLATE_FDS.overlay},set=3,opaque=overlay-ro`,
    '-blockdev', rootBase,
    '-drive', 'if=none,id=root,driver=qcow2,file.driver=file,file.filename=/dev/fdset/3,backing=base,snapshot=on',
    ...machineAndDevices(shape, files),
    '-S', '-incoming', `fd:${TEMPLATE_FDS.state}`,
  ];
}

/** QMP arguments that attach the job disk (fdset 2) as the second virtio disk, as the cold path does. */
export function jobDiskQmp(): { blockdev: Record<string, unknown>; device: Record<string, unknown> } {
  return {
    blockdev: { driver: 'raw', 'node-name': 'job', discard: 'unmap', file: { driver: 'file', filename: '/dev/fdset/2', discard: 'unmap' } },
    device: { driver: 'virtio-blk-pci', id: 'vdb', drive: 'job', werror: 'report', rerror: 'report' },
  };
}
