// Tiny helpers shared by the CLIs: argument parsing (node:util parseArgs), run-as-main detection
// and uniform error printing.
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { JrError, isJrError, messageOf } from '../errors.js';

type Options = NonNullable<ParseArgsConfig['options']>;
type Values<O extends Options> = ReturnType<typeof parseArgs<{ options: O; strict: true; allowPositionals: false }>>['values'];

/**
 * Parse a command's own options with node:util parseArgs; every other argument (service settings
 * such as `--queue DIR`, positionals, whatever follows `--`) is handed back in order for
 * loadSettings, which knows the settings and refuses what nobody knows.
 */
export function parseOwnArgs<O extends Options>(argv: string[], options: O): { values: Values<O>; rest: string[] } {
  const byShort = new Map(Object.entries(options).filter(([, o]) => o.short).map(([n, o]) => [o.short!, n]));
  const own: string[] = [];
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') { rest.push(...argv.slice(i)); break; }
    const long = /^--([^=]+)(=.*)?$/s.exec(a);
    const name = long ? long[1]! : /^-([^-])$/.exec(a) ? byShort.get(a[1]!) : undefined;
    const opt = name === undefined ? undefined : options[name];
    if (!opt) { rest.push(a); continue; }
    if (opt.type === 'string' && !long?.[2]) {
      // The next argument is the value, whatever it looks like (a file named -x included).
      const v = argv[++i];
      if (v === undefined) throw new JrError('JR_E_USAGE', `Expected ${a} to be followed by a value`);
      own.push(`--${name}=${v}`);
    } else own.push(a);
  }
  try {
    const { values } = parseArgs({ args: own, options, strict: true, allowPositionals: false });
    return { values: values as Values<O>, rest };
  } catch (e) {
    throw new JrError('JR_E_USAGE', messageOf(e), { cause: e });
  }
}

/** True when the module at `metaUrl` is the program node was asked to run. */
export function isMain(metaUrl: string): boolean {
  const argv1 = process.argv[1];
  if (!argv1) return false;
  try {
    return realpathSync(argv1) === realpathSync(fileURLToPath(metaUrl));
  } catch {
    return false;
  }
}

/** Print an error for a human: `prog: message` (+ the code for JrErrors), to stderr. */
export function printError(prog: string, e: unknown): void {
  const code = isJrError(e) ? ` [${e.code}]` : '';
  process.stderr.write(`${prog}: ${messageOf(e)}${code}\n`);
  if (!isJrError(e) && e instanceof Error && process.env.JOBRUNNER_DEBUG) process.stderr.write(`${e.stack}\n`);
}

/** Run an async main and exit with its code; errors are printed, exit 125 (or 2 for usage). */
export function runMain(prog: string, main: (argv: string[]) => Promise<number>): void {
  main(process.argv.slice(2)).then(
    (code) => { process.exitCode = code; },
    (e: unknown) => {
      printError(prog, e);
      process.exitCode = isJrError(e, 'JR_E_USAGE') ? 2 : 125;
    },
  );
}
