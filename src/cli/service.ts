// `jobrunner [options]`: the service in the foreground (systemd-friendly: logs to stdout).
import { loadSettings } from '../config.js';
import { JrError } from '../errors.js';
import { createLogger } from '../log.js';
import { resolveRunAs } from '../run-as.js';
import { Service } from '../service.js';
import { VERSION } from '../version.js';

/** Run the service until SIGTERM/SIGINT (or, with --once, until the queue is empty). */
export async function serviceMain(argv: string[]): Promise<number> {
  const { settings, rest, configFile } = loadSettings(argv);
  if (rest.length > 0) throw new JrError('JR_E_USAGE', `unexpected argument ${JSON.stringify(rest[0])} (see jobrunner --help)`);
  const logger = createLogger(settings.logLevel);
  if (configFile) logger.info({ configFile }, 'configuration file loaded');
  const runAs = await resolveRunAs(settings.runAs);
  if (!runAs && process.getuid?.() === 0) logger.warn('qemu runs as root (--run-as ""): do not run untrusted jobs like this (docs/SECURITY.md)');
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
