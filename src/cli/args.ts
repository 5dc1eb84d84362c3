// Tiny helpers shared by the CLIs: run-as-main detection and uniform error printing.
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { isJrError, messageOf } from '../errors.js';

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
