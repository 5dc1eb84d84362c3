// The one logger. pino: pretty on a TTY, JSON lines otherwise (systemd/journald friendly).
import { pino, type Logger } from 'pino';

export type { Logger };

/** Build the process-wide logger; `level` comes from config. Logs go to stdout (or `destination`). */
export function createLogger(level = 'info', opts: { pretty?: boolean; destination?: NodeJS.WritableStream } = {}): Logger {
  // A destination (tests capture the JSON lines) is never pretty-printed.
  if (opts.destination) return pino({ level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime }, opts.destination);
  const pretty = opts.pretty ?? process.stdout.isTTY === true;
  if (pretty) {
    return pino({
      level,
      transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss', ignore: 'pid,hostname' } },
    });
  }
  return pino({ level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime });
}
