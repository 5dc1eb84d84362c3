// Boot one job image in a VM: the part of the lifecycle shared by `jobrunner run` and the service.
// Chooses the accelerator, builds the spec, launches, and falls back from KVM to TCG once when a
// KVM guest shows no sign of life (a /dev/kvm that hangs guests is a known failure mode).
import { randomBytes } from 'node:crypto';
import { chown, copyFile } from 'node:fs/promises';
import path from 'node:path';
import type { BaseImage } from '../image/base.js';
import { launchVm, type LaunchOptions, type VmOutcome } from '../vm/launch.js';
import { chooseAccel, probeKvm, type AccelRequest, type AccelChoice } from '../vm/accel.js';
import { kernelCmdline, type Accel } from '../vm/qemu-args.js';
import type { RunAs } from '../run-as.js';
import { restoreJobVm, type StartInfo } from '../vm/restore.js';

export interface VmRunSettings {
  qemu: string;
  accel: AccelRequest;
  memory: number;
  cpus: number;
  network: 'off' | 'user';
  init: 'construir' | 'systemd';
  timeout: number;
  bootTimeout: number;
  killGrace: number;
  logCap: number;
  sandbox: boolean;
  /** restore: from a saved template (vm/restore.ts), falling back to cold; absent means cold. */
  start?: 'restore' | 'cold';
}

export interface VmRunRequest {
  image: string;
  base: BaseImage;
  settings: VmRunSettings;
  logPath: string | null;
  tmpDir: string;
  runAs?: RunAs;
  onConsole?: LaunchOptions['onConsole'];
  onSpawn?: LaunchOptions['onSpawn'];
  signal?: AbortSignal;
  /** Initrd override (benchmarks compare ours with Debian's stock initrd). */
  initrd?: string;
  /** qcow2 layers over the base's root.img, bottom first (a derived base layer: deps/layer.ts). */
  rootLayers?: string[];
  /** Write into the top root layer (only when building a layer). */
  rootWritable?: boolean;
  /** Warnings for the operator (a restore that fell back to a cold boot); notes (a template being built). */
  onWarning?: (msg: string) => void;
  onNote?: (msg: string) => void;
  /** The service passes false: a job never waits for a template build (it boots cold meanwhile). */
  awaitTemplate?: boolean;
}

// 'unshare': the same outcome from the bubblewrap runner (src/unshare/run.ts), no VM involved.
export type VmRunOutcome = VmOutcome & { accel: Accel | 'unshare'; accelReason: string; start?: StartInfo };

/** Remembers, per process, that KVM hung a guest so later jobs go straight to TCG. */
export class AccelState {
  private choice: AccelChoice | null = null;
  constructor(private readonly request: AccelRequest) {}

  async get(): Promise<AccelChoice> {
    this.choice ??= chooseAccel(this.request, await probeKvm());
    return this.choice;
  }

  markKvmBroken(): void {
    this.choice = { accel: 'tcg', reason: 'KVM hung a guest at boot (no console output); using TCG from now on', degraded: true };
  }
}

/** Run the job image in a fresh VM until it ends; the outcome says how it ended and why. */
export async function runJobVm(req: VmRunRequest, accel: AccelState): Promise<VmRunOutcome> {
  const choice = await accel.get();
  const out = await launchOnce(req, choice.accel);
  if (choice.accel === 'kvm' && out.end === 'boot-failed' && !out.sawOutput && req.settings.accel === 'auto') {
    accel.markKvmBroken();
    const retry = await launchOnce(req, 'tcg');
    return { ...retry, accel: 'tcg', accelReason: (await accel.get()).reason };
  }
  return { ...out, accel: choice.accel, accelReason: choice.reason };
}

/**
 * An unprivileged qemu reads the kernel and initrd by path: give it private copies in its own temp
 * dir (10 MB, milliseconds) rather than access to the base image's directory.
 */
async function bootFiles(req: VmRunRequest): Promise<{ kernel: string; initrd: string }> {
  const initrd = req.initrd ?? req.base.initrd;
  if (!req.runAs) return { kernel: req.base.kernel, initrd };
  const kernelCopy = path.join(req.tmpDir, 'vmlinuz');
  const initrdCopy = path.join(req.tmpDir, 'initrd.img');
  await copyFile(req.base.kernel, kernelCopy);
  await copyFile(initrd, initrdCopy);
  for (const f of [kernelCopy, initrdCopy]) await chown(f, req.runAs.uid, req.runAs.gid);
  return { kernel: kernelCopy, initrd: initrdCopy };
}

// Each fallback reason is said once per process; the status JSON records it for every job.
const warned = new Set<string>();

async function launchOnce(req: VmRunRequest, accel: Accel): Promise<VmOutcome & { start?: StartInfo }> {
  const s = req.settings;
  const nonce = randomBytes(12).toString('hex');
  const { kernel, initrd } = await bootFiles(req);
  let start: StartInfo | undefined;
  // Restore needs construir as PID 1 and our own initrd (the template is booted with them). A job on
  // a derived layer (build dependencies) boots cold: templates are made over the bare base's root.
  const layered = (req.rootLayers?.length ?? 0) > 0;
  if (layered && s.start === 'restore') start = { requested: 'restore', used: 'cold', template: null, built: false, fallback: 'the job boots on a derived base layer (build dependencies); VM templates exist for bare base images only', timings: null };
  if (s.start === 'restore' && s.init === 'construir' && !req.initrd && !layered) {
    const r = await restoreJobVm({
      base: req.base, qemu: s.qemu, accel, memoryMiB: Math.floor(s.memory / (1024 * 1024)), cpus: s.cpus, network: s.network,
      sandbox: s.sandbox, bootTimeoutMs: s.bootTimeout, killGraceMs: s.killGrace, runAs: req.runAs, image: req.image, kernel, initrd,
      timeoutMs: s.timeout, logPath: req.logPath, logCap: s.logCap, tmpDir: req.tmpDir, onConsole: req.onConsole, onSpawn: req.onSpawn,
      signal: req.signal, log: req.onNote, scratchDir: req.tmpDir, awaitTemplate: req.awaitTemplate,
    });
    if (r.outcome) return { ...r.outcome, start: r.start };
    start = r.start;
    if (r.pending) req.onNote?.(r.start.fallback ?? '');
    else if (!warned.has(r.start.fallback ?? '')) { warned.add(r.start.fallback ?? ''); req.onWarning?.(`${r.start.fallback}; booting cold instead`); }
  }
  const out = await launchVm({
    qemuBinary: s.qemu,
    spec: {
      accel, memoryMiB: Math.floor(s.memory / (1024 * 1024)), cpus: s.cpus,
      kernel, initrd, rootImage: req.base.root, jobImage: req.image,
      cmdline: kernelCmdline({ nonce, init: s.init }), network: s.network, sandbox: s.sandbox,
      rootLayers: req.rootLayers, rootWritable: req.rootWritable,
    },
    nonce, bootTimeoutMs: s.bootTimeout, timeoutMs: s.timeout, killGraceMs: s.killGrace,
    logPath: req.logPath, logCap: s.logCap, tmpDir: req.tmpDir, runAs: req.runAs,
    onConsole: req.onConsole, onSpawn: req.onSpawn, signal: req.signal,
  });
  return { ...out, start: start ?? { requested: s.start ?? 'cold', used: 'cold', template: null, built: false, fallback: null, timings: null } };
}
