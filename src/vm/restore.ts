// Start a job from its template instead of booting: qemu loads the saved state (-incoming fd:7, the
// state file opened read-only by us), its root a throw-away snapshot over the frozen template
// overlay; while it loads we verify the template's checksums; then, still paused, the job disk is
// attached through its fdset (QMP blockdev-add + device_add), the guest continues, and the one
// line it waits for on its console gives it what must not be cloned: the run's marker nonce and
// fresh entropy (vmgenid makes the kernel reseed as well); then it asks for the host's clock. From construir's start
// marker on, the run is the same as a cold boot's, watched by the same launcher.
// Anything that goes wrong before the guest continues means "boot cold instead" (the job image has
// not been touched); the caller does that, with one warning.
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { messageOf } from '../errors.js';
import type { StartRecord } from '../spool/record.js';
import { launchVm, type LaunchOptions, type VmOutcome } from './launch.js';
import { Qmp } from './qmp.js';
import { ensureTemplate, discardTemplate, templateOrBuild, type TemplateRequest } from './template.js';
import { jobDiskQmp, restoreArgs, type TemplateShape } from './template-args.js';

const CLOCK_REQUEST = '@@construir-template:clock@@';

/** The host's wall clock in µs (ms precision is plenty against a 1 s goal; follows clock steps). */
function nowMicros(): number {
  return Date.now() * 1000;
}

/** How the VM started: the status record's shape (spool/record.ts). */
export type StartInfo = StartRecord;

export interface RestoreRequest extends TemplateRequest {
  image: string;
  kernel: string;
  initrd: string;
  timeoutMs: number;
  logPath: string | null;
  logCap: number;
  tmpDir: string;
  onConsole?: LaunchOptions['onConsole'];
  onSpawn?: LaunchOptions['onSpawn'];
  signal?: AbortSignal;
  /** Progress notes for the operator (a template being built). */
  log?: (msg: string) => void;
  /** false (the service): a missing template is built in the background and this job boots cold. */
  awaitTemplate?: boolean;
}

export type RestoreResult =
  | { outcome: VmOutcome; start: StartInfo }
  | { outcome: null; start: StartInfo; pending?: boolean };

// Restores that failed in this process, per template: after MAX_FAILURES in a row later jobs boot
// cold without trying (a transient failure, e.g. a QMP timeout on a swamped machine, is retried).
const failures = new Map<string, { count: number; why: string }>();
const MAX_FAILURES = 3;

/** Restore the job's VM from its template (building it when missing); outcome null: boot cold. */
export async function restoreJobVm(req: RestoreRequest): Promise<RestoreResult> {
  const t0 = Date.now();
  const start: StartInfo = { requested: 'restore', used: 'restore', template: null, built: false, fallback: null, timings: null };
  const cold = (why: string): RestoreResult => ({ outcome: null, start: { ...start, used: 'cold', fallback: why, timings: null } });
  let tpl;
  try {
    const t = req.awaitTemplate === false ? await templateOrBuild(req, req.log) : await ensureTemplate(req, req.log);
    if ('pending' in t) return { outcome: null, pending: true, start: { ...start, used: 'cold', fallback: `VM template ${t.pending} is being built; this job boots cold meanwhile` } };
    tpl = t;
  } catch (e) {
    return cold(`no usable VM template: ${messageOf(e)}`);
  }
  start.template = path.basename(tpl.dir);
  start.built = tpl.built;
  const known = failures.get(start.template);
  if (known && known.count >= MAX_FAILURES) return cold(`restoring VM template ${start.template} failed ${known.count} times in this process, last: ${known.why}`);
  const templateMs = Date.now() - t0;
  // Verified while qemu loads; the guest does not run before this has passed.
  const checked = tpl.checksums();
  checked.catch(() => undefined);

  const shape: TemplateShape = tpl.meta.inputs.shape;
  const qmpSocket = path.join(req.tmpDir, 'qmp.sock');
  const nonce = randomBytes(12).toString('hex');
  const ctl = new AbortController();
  const forward = (): void => ctl.abort();
  if (req.signal?.aborted) ctl.abort();
  req.signal?.addEventListener('abort', forward);
  // Written by the control flow below while the launcher runs (an object: TS does not narrow it).
  const st = { failure: null as string | null, resumed: false, qmp: null as Qmp | null, spawnedAt: 0,
    loadMs: null as number | null, diskMs: null as number | null, stdin: null as Writable | null, console: '', clockSent: false };
  // The guest asks for the time once it runs again (construir's resume entry): answered at once,
  // so the clock it sets is not stale by however long the resume took.
  const onConsole = (chunk: Buffer): void => {
    req.onConsole?.(chunk);
    if (!st.resumed || st.clockSent || !st.stdin) return;
    st.console = (st.console + chunk.toString('latin1')).slice(-256);
    if (!st.console.includes(CLOCK_REQUEST)) return;
    st.clockSent = true;
    // T1 (request seen) and T2 (answer sent), in µs: the guest computes its offset NTP-style from
    // these and its own round trip (guest-config/construir), so the serial latency is accounted for.
    const t1 = nowMicros();
    st.stdin.write(`time=${t1} ${nowMicros()}\n`);
  };
  let control: Promise<void> = Promise.resolve();

  const outcome = await launchVm({
    qemuBinary: req.qemu,
    spec: {
      accel: shape.accel, memoryMiB: shape.memoryMiB, cpus: shape.cpus, kernel: req.kernel, initrd: req.initrd,
      rootImage: req.base.root, jobImage: req.image, cmdline: [], network: shape.network, sandbox: shape.sandbox,
    },
    args: restoreArgs(shape, { kernel: req.kernel, initrd: req.initrd, qmpSocket }),
    moreFiles: [tpl.overlay, tpl.state],
    nonce, bootTimeoutMs: req.bootTimeoutMs, timeoutMs: req.timeoutMs, killGraceMs: req.killGraceMs,
    logPath: req.logPath, logCap: req.logCap, tmpDir: req.tmpDir, runAs: req.runAs,
    onConsole, onSpawn: req.onSpawn, signal: ctl.signal,
    onStarted: ({ stdin }) => {
      st.spawnedAt = Date.now();
      st.stdin = stdin;
      control = (async () => {
        const deadline = st.spawnedAt + req.bootTimeoutMs;
        const qmp = st.qmp = await Qmp.connect(qmpSocket, deadline, ctl.signal);
        await qmp.waitStatus(['paused'], deadline, ['running', 'shutdown', 'internal-error']);
        st.loadMs = Date.now() - st.spawnedAt;
        await checked;
        const disk = jobDiskQmp();
        await qmp.execute('blockdev-add', disk.blockdev);
        await qmp.execute('device_add', disk.device);
        st.diskMs = Date.now() - st.spawnedAt;
        await qmp.execute('cont');
        st.resumed = true;
        stdin.write(`resume nonce=${nonce} seed=${randomBytes(32).toString('hex')}\n`);
      })().catch((e: unknown) => {
        if (st.resumed) return; // the guest runs: the launcher's watchdogs and markers decide from here
        st.failure = messageOf(e);
        ctl.abort();
      });
    },
  });
  req.signal?.removeEventListener('abort', forward);
  await control;
  st.qmp?.close();

  start.timings = { templateMs, loadMs: st.loadMs, diskMs: st.diskMs, jobStartMs: outcome.bootMs };
  if (req.signal?.aborted) return { outcome, start }; // shutdown: requeued by the caller, not a fallback
  // qemu killed from outside (an operator, the OOM killer) is reported as such, not retried cold.
  if (outcome.end === 'killed') return { outcome, start };
  if (!st.resumed || (outcome.end === 'bad-image' && outcome.reason.includes('(no-disk)'))) {
    const why = st.failure ?? (st.resumed ? 'the restored guest never saw its job disk' : outcome.reason);
    const corrupt = await checked.then(() => false, () => true);
    if (corrupt) await discardTemplate(tpl.dir).catch(() => undefined); // rebuilt on next need
    else failures.set(start.template, { count: (failures.get(start.template)?.count ?? 0) + 1, why });
    return cold(`restoring VM template ${start.template} failed: ${why}`);
  }
  failures.delete(start.template);
  return { outcome, start };
}
