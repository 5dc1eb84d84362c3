// `jobrunner run IMAGE`: boot one job now, in the foreground, the way the service would.
import { chown, mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { loadSettings, settingsHelp, type SettingKey } from '../config.js';
import { JrError, isJrError } from '../errors.js';
import { loadBaseImage } from '../image/base.js';
import { checkJobImage } from '../job/validate.js';
import { loadJobManifest, prepareDeps, settingsFor } from '../job/deps.js';
import { growJobDisk } from '../deps/grow-disk.js';
import { runRecord } from '../job/run-record.js';
import { digestFile } from '../image/meta.js';
import { writeFileAtomic } from '../fsutil.js';
import { AccelState, runJobVm } from '../job/vm-run.js';
import { runJobUnshare } from '../unshare/run.js';
import { EXIT, exitCodeFor } from '../job/exit-codes.js';
import { handOver, resolveRunAs } from '../run-as.js';
import { formatDuration } from '../units.js';
import { parseOwnArgs } from './args.js';

const KEYS: SettingKey[] = ['timeout', 'baseImage', 'baseImageDir', 'memory', 'cpus', 'accel', 'network', 'init',
  'bootTimeout', 'killGrace', 'logCap', 'maxImageSize', 'qemu', 'sandbox', 'runAs',
  // deps (issue 11): the job's jobrunner.json is honoured here as in the service.
  'maxMemory', 'maxCpus', 'maxTimeout', 'maxDisk', 'depsCache', 'depsCacheSize', 'start',
  'isolation', 'unshareUidBase', 'unshareCache', 'unsharePids', 'unshareScratch'];

export const RUN_HELP = `Usage: jobrunner run IMAGE [options]

Boots one job image now, in the foreground, exactly as the service would: the base image's root
disk in snapshot mode, IMAGE as the writable second disk, /job/bin/construir run as root. By
default (--start restore) the guest is restored from the base image's saved VM template (built
first when missing; a cold boot with a warning when it cannot be used; --start cold always boots;
docs/START.md). With --isolation unshare the job runs in a bubblewrap sandbox on the host kernel
instead (no VM; the same contract and exit codes; needs root; docs/SECURITY.md says what it does
not protect). The
guest console streams to stdout. IMAGE is modified in place (results land in it, e.g. /job/output/;
pull them out with scripts/extract IMAGE OUTDIR). A jobrunner.json in IMAGE is honoured as by the
service: its packages are resolved, fetched and installed into a cached derived layer first
(docs/DEPENDENCIES.md), its memory/cpus/timeout requests applied within the --max-* caps.

Options:
  --base NAME                 alias of --base-image
  --log FILE                  also keep the console log in FILE
  --quiet                     do not stream the console; print only the summary
  --status FILE               write the run's status record (the service's NAME.json format) to FILE
${settingsHelp(KEYS)}
  -h, --help                  this help

Exit status:
  0-255  the job's own exit status (/job/bin/construir missing or not executable: 127)
  ${EXIT.bootFailed}    the guest did not boot (no sign of life within --boot-timeout, or qemu failed; unshare: the sandbox did not start)
  ${EXIT.badImage}    bad job image (refused before boot, or the guest could not mount it)
  ${EXIT.crashed}    the guest stopped without reporting the job's exit status
  ${EXIT.timeout}    the job ran past --timeout and was killed
  ${EXIT.runnerError}    jobrunner error (bad option, base image missing, ...)
  ${EXIT.interrupted}    interrupted by SIGINT/SIGTERM
`;

/** Entry point of `jobrunner run`; returns the process exit code. */
export async function runMainCmd(argv: string[]): Promise<number> {
  const { values, rest } = parseOwnArgs(argv, {
    help: { type: 'boolean', short: 'h' }, base: { type: 'string' }, log: { type: 'string' }, quiet: { type: 'boolean' }, status: { type: 'string' },
  });
  if (values.help) { process.stdout.write(RUN_HELP); return 0; }
  const logPath = values.log ?? null;
  if (logPath === '') throw new JrError('JR_E_USAGE', 'Expected --log to be followed by a file name');
  const quiet = values.quiet === true;
  const statusPath = values.status === undefined ? null : path.resolve(values.status);
  if (values.status === '') throw new JrError('JR_E_USAGE', 'Expected --status to be followed by a file name');
  // --base is an alias of the setting --base-image.
  if (values.base !== undefined) rest.unshift(`--base-image=${values.base}`);
  const { settings, rest: words } = loadSettings(rest, process.env, KEYS);
  if (words.length !== 1) throw new JrError('JR_E_USAGE', `Expected exactly one IMAGE, got ${words.length} (see jobrunner run --help)`);
  const image = path.resolve(words[0]!);
  let manifest;
  try {
    await checkJobImage(image, settings.maxImageSize);
    manifest = await loadJobManifest(image, settings);
    // deps (issue 11): the manifest's disk grows IMAGE itself (a foreground run writes it in place anyway).
    if (manifest.disk !== null) await growJobDisk(image, manifest.disk);
  } catch (e) {
    if (isJrError(e, 'JR_E_INPUT')) { process.stderr.write(`jobrunner run: ${image}: ${e.message}\n`); return EXIT.badImage; }
    throw e;
  }
  const base = await loadBaseImage(settings.baseImageDir, settings.baseImage);
  const runAs = await resolveRunAs(settings.runAs);
  const accel = new AccelState(settings.accel);
  const choice = await accel.get();
  if (choice.degraded && settings.isolation === 'vm') process.stderr.write(`jobrunner run: WARNING: ${choice.reason}\n`);

  const abort = new AbortController();
  const onSignal = (): void => abort.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  // deps (issue 11): an unresolvable package is the job's fault (bad image), before boot.
  let deps;
  try {
    deps = await prepareDeps(manifest, base, { settings, accel, runAs, signal: abort.signal });
  } catch (e) {
    if (isJrError(e, 'JR_E_INPUT')) { process.stderr.write(`jobrunner run: ${image}: ${e.message}\n`); return EXIT.badImage; }
    throw e;
  }
  if (deps) {
    const d = deps.record;
    process.stderr.write(`jobrunner run: packages: ${d.resolved.length} resolved, layer ${d.layer ? d.layer.key.slice(0, 12) : '(none needed)'}` +
      `${d.cacheHit ? ' (cached)' : `, ${d.downloaded.debs} .debs fetched, installed in ${d.durations.install ?? 0} s`}\n`);
  }
  const tmpDir = await mkdtemp(path.join(os.tmpdir(), 'jobrunner-run-'));
  // qemu as the unprivileged user writes IMAGE in place: lend it the file, give it back after.
  const owner = await stat(image);
  try {
    const startedAt = new Date().toISOString();
    const input = statusPath ? await digestFile(image) : { bytes: null, sha256: null };
    await handOver(runAs, [image, tmpDir]);
    const onConsole = quiet ? undefined : (chunk: Buffer): void => { process.stdout.write(chunk); };
    // --- isolation (issue 12) ---
    const out = settings.isolation === 'unshare'
      ? await runJobUnshare({ image, base, settings: { ...settings, ...settingsFor(settings, manifest) }, rootLayers: deps?.rootLayers, logPath, signal: abort.signal, onConsole,
        onNote: (line) => { if (!quiet) process.stderr.write(`jobrunner run: ${line}\n`); } })
      : await runJobVm({ image, base, settings: settingsFor(settings, manifest), rootLayers: deps?.rootLayers, logPath, tmpDir, runAs, signal: abort.signal, onConsole,
        onWarning: (msg) => { process.stderr.write(`jobrunner run: WARNING: ${msg}\n`); },
        onNote: (msg) => { process.stderr.write(`jobrunner run: ${msg}\n`); } }, accel);
    // --- end isolation ---
    const code = exitCodeFor(out.end, out.exitCode);
    if (statusPath) await writeFileAtomic(statusPath, `${JSON.stringify(runRecord({ image, startedAt, input, base, vm: out, deps: deps?.record ?? null }), null, 2)}\n`);
    const restored = 'start' in out && out.start?.used === 'restore';
    const boot = out.bootMs === null ? 'never booted' : `${restored ? 'restored' : 'boot'} ${formatDuration(out.bootMs)}`;
    process.stderr.write(`jobrunner run: ${out.reason} (${boot}, total ${formatDuration(out.totalMs)}, ${out.accel}` +
      `${out.consoleTruncated ? ', console log truncated' : ''}); exit ${code}\n`);
    return code;
  } finally {
    if (runAs) await chown(image, owner.uid, owner.gid).catch(() => undefined);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await rm(tmpDir, { recursive: true, force: true });
  }
}
