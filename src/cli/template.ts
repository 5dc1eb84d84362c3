// `jobrunner template build|show`: build (or check) the VM template jobs restore from, ahead of the
// first job that needs it (which would otherwise build it on the spot).
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { loadSettings, settingsHelp, type SettingKey } from '../config.js';
import { JrError } from '../errors.js';
import { loadBaseImage } from '../image/base.js';
import { AccelState } from '../job/vm-run.js';
import { resolveRunAs } from '../run-as.js';
import { ensureTemplate, readTemplate, templateInputs, templatesDir, TEMPLATE_FILES, type TemplateRequest } from '../vm/template.js';
import { formatBytes, formatDuration } from '../units.js';

const KEYS: SettingKey[] = ['baseImage', 'baseImageDir', 'memory', 'cpus', 'accel', 'network', 'qemu', 'sandbox', 'runAs', 'bootTimeout', 'killGrace'];

const HELP = `Usage: jobrunner template build|show [options]

Jobs start by restoring a saved, pre-booted guest (--start restore, the default): a template per
base image and VM shape, kept read-only in BASE-IMAGE-DIR/NAME/templates/KEY/. The first job that
needs one builds it (one cold boot and a save); 'build' does that now, 'show' says whether the
template for these settings exists and is intact (sizes, checksums), without building it.
The settings must be the ones the service runs with (memory, cpus, ... are part of the key).

Options:
${settingsHelp(KEYS)}
  -h, --help                  this help
`;

/** Entry point of `jobrunner template`; returns the process exit code. */
export async function templateMain(argv: string[]): Promise<number> {
  if (argv.includes('-h') || argv.includes('--help')) { process.stdout.write(HELP); return 0; }
  const { settings: s, rest } = loadSettings(argv, process.env, KEYS);
  const verb = rest[0];
  if (rest.length !== 1 || (verb !== 'build' && verb !== 'show')) throw new JrError('JR_E_USAGE', `Expected 'build' or 'show' (see jobrunner template --help), got ${JSON.stringify(rest.join(' '))}`);
  const base = await loadBaseImage(s.baseImageDir, s.baseImage);
  const accel = await new AccelState(s.accel).get();
  const req: TemplateRequest = {
    base, qemu: s.qemu, accel: accel.accel, memoryMiB: Math.floor(s.memory / (1024 * 1024)), cpus: s.cpus, network: s.network,
    sandbox: s.sandbox, bootTimeoutMs: s.bootTimeout, killGraceMs: s.killGrace, runAs: await resolveRunAs(s.runAs),
  };
  const { key } = await templateInputs(req);
  const dir = path.join(templatesDir(base), key);
  if (verb === 'show') {
    const t = await readTemplate(dir, key);
    if (!t) { process.stdout.write(`template ${key}: not built (or stale/corrupt) in ${dir}\n`); return 1; }
    await t.checksums();
    process.stdout.write(`template ${key}: intact in ${dir}; ${await describe(dir, t.meta.timings)}\n`);
    return 0;
  }
  const t = await ensureTemplate(req, (msg) => process.stderr.write(`jobrunner template: ${msg}\n`));
  await t.checksums();
  process.stdout.write(`template ${key}: ${t.built ? 'built' : 'already built'} in ${dir}; ${await describe(dir, t.meta.timings)}\n`);
  return 0;
}

async function describe(dir: string, timings: { bootMs: number; saveMs: number; totalMs: number }): Promise<string> {
  const sizes = await Promise.all(TEMPLATE_FILES.map(async (f) => {
    const st = await stat(path.join(dir, f));
    return `${f} ${formatBytes(st.size)} (${formatBytes(st.blocks * 512)} on disk)`;
  }));
  return `${sizes.join(', ')}; build took ${formatDuration(timings.totalMs)} (boot ${formatDuration(timings.bootMs)}, save ${formatDuration(timings.saveMs)})`;
}
