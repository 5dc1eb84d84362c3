// The one logger. pino: pretty on a TTY, JSON lines otherwise (systemd/journald friendly).
import { pino, type Logger } from 'pino';

export type { Logger };

/** Build the process-wide logger; `level` comes from config. Logs go to stdout. */
export function createLogger(level = 'info', opts: { pretty?: boolean } = {}): Logger {
  const pretty = opts.pretty ?? process.stdout.isTTY === true;
  if (pretty) {
    return pino({
      level,
      transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss', ignore: 'pid,hostname' } },
    });
  }
  return pino({ level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime });
}
