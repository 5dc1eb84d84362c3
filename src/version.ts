// The package version, in a module of its own so that any command (or the service) can record it
// without importing the command dispatcher (which loads the commands: an import cycle).
import { readFileSync } from 'node:fs';
import { REPO_ROOT } from './config.js';

/** The package version, recorded in every job status and printed by --version. */
export const VERSION: string = (JSON.parse(readFileSync(`${REPO_ROOT}/package.json`, 'utf8')) as { version: string }).version;
