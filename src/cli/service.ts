// `jobrunner [options]`: the service in the foreground (systemd-friendly: logs to stdout).
import { loadSettings, type Settings } from '../config.js';
import { JrError } from '../errors.js';
import { createLogger, type Logger } from '../log.js';
import { resolveRunAs } from '../run-as.js';
import { Service } from '../service.js';
import { VERSION } from '../version.js';

/**
 * The HTTP API and dashboard on --listen (issue 14). Loaded only when listening: --listen off never
 * imports fastify. An address that cannot be bound is JR_E_LISTEN and the service does not start:
 * checked before start-up claims anything, and again (the same code) if it was taken meanwhile.
 */
async function listen(service: Service | null, settings: Settings, logger: Logger): Promise<{ close: () => Promise<void> } | null> {
  if (settings.listen === 'off') return null;
  const { checkListen, startHttp } = await import('../http/server.js');
  if (!service) { await checkListen(settings); return null; }
  const http = await startHttp(service, settings, logger);
  logger.info({ listen: http.address }, 'HTTP API and dashboard listening');
  return http;
}

/** Run the service until SIGTERM/SIGINT (or, with --once, until the queue is empty). */
export async function serviceMain(argv: string[]): Promise<number> {
  const { settings, rest, configFile } = loadSettings(argv);
  if (rest.length > 0) throw new JrError('JR_E_USAGE', `unexpected argument ${JSON.stringify(rest[0])} (see jobrunner --help)`);
  const logger = createLogger(settings.logLevel);
  if (configFile) logger.info({ configFile }, 'configuration file loaded');
  const runAs = await resolveRunAs(settings.runAs);
  if (!runAs && process.getuid?.() === 0) logger.warn('qemu runs as root (--run-as ""): do not run untrusted jobs like this (docs/SECURITY.md)');
  await listen(null, settings, logger);
  const service = new Service({ settings, logger, version: VERSION, runAs });
  const onSignal = (sig: NodeJS.Signals): void => { void service.stop(`received ${sig}`); };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  let http: { close: () => Promise<void> } | null = null;
  try {
    await service.start();
    http = await listen(service, settings, logger);
  } catch (e) {
    await service.stop('start-up failed').catch(() => undefined);
    throw e;
  }
  await service.done;
  // After the jobs: log followers get their final status before the listener goes.
  await http?.close();
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
  logger.flush?.();
  return 0;
}
