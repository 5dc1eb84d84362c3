// `jobrunner [options]`: the service in the foreground (systemd-friendly: logs to stdout).
import { loadSettings } from '../config.js';
import { JrError } from '../errors.js';
import { createLogger } from '../log.js';
import { run } from '../proc.js';
import { Service } from '../service.js';
import { VERSION } from './jobrunner.js';

/** Resolve a user name to uid/gid for running qemu unprivileged. */
async function resolveUser(name: string): Promise<{ uid: number; gid: number }> {
  const r = await run('id', ['-u', '--', name], { reject: false });
  const g = await run('id', ['-g', '--', name], { reject: false });
  if (r.exitCode !== 0 || g.exitCode !== 0) throw new JrError('JR_E_CONFIG', `--run-as ${name}: no such user (create it: useradd --system --no-create-home ${name})`);
  return { uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) };
}

/** Run the service until SIGTERM/SIGINT (or, with --once, until the queue is empty). */
export async function serviceMain(argv: string[]): Promise<number> {
  const { settings, rest, configFile } = loadSettings(argv);
  if (rest.length > 0) throw new JrError('JR_E_USAGE', `unexpected argument ${JSON.stringify(rest[0])} (see jobrunner --help)`);
  const logger = createLogger(settings.logLevel);
  if (configFile) logger.info({ configFile }, 'configuration file loaded');
  const runAs = settings.runAs && process.getuid?.() === 0 ? await resolveUser(settings.runAs) : undefined;
  const service = new Service({ settings, logger, version: VERSION, runAs });
  const onSignal = (sig: NodeJS.Signals): void => { void service.stop(`received ${sig}`); };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    await service.start();
  } catch (e) {
    await service.stop('start-up failed').catch(() => undefined);
    throw e;
  }
  await service.done;
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
  logger.flush?.();
  return 0;
}
