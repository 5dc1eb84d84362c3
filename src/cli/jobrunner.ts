// `jobrunner`: the command dispatcher. No command (or only options) runs the service.
import { settingsHelp } from '../config.js';
import { JrError } from '../errors.js';
import { VERSION } from '../version.js';
import { isMain, runMain } from './args.js';

const COMMANDS: Record<string, { summary: string; load: () => Promise<(argv: string[]) => Promise<number>> }> = {
  run: { summary: 'boot one job image now, in the foreground', load: async () => (await import('./run.js')).runMainCmd },
  status: { summary: 'show queued, running and recently finished jobs (from the spool)', load: async () => (await import('./status.js')).statusMain },
  compress: { summary: 'compress an image to .xz (sparse-aware, parallel)', load: async () => (await import('./compress.js')).compressMain },
  mkimage: { summary: 'make a job image from a directory or tarball (no root)', load: async () => (await import('./mkimage.js')).main },
  extract: { summary: 'pull files out of a result image (.img or .img.xz, no root)', load: async () => (await import('./extract.js')).main },
  'node-run': { summary: 'node side of --backend slurm: boot a claimed job (run by Slurm, not by hand)', load: async () => (await import('./node-run.js')).nodeRunMain },
  deps: { summary: 'list or prune the cache of fetched .debs and derived base layers', load: async () => (await import('./deps.js')).depsMain },
  submit: { summary: 'submit a job directory or image to a jobrunner (HTTP API or the local queue)', load: async () => (await import('./submit.js')).submitMain },
  token: { summary: 'add, list or revoke API tokens (HTTP submit and cancel)', load: async () => (await import('./token.js')).tokenMain },
  demo: { summary: 'package examples/hello, run it through the service, show the result', load: async () => (await import('./demo.js')).demoMain },
  template: { summary: 'build or check the saved VM template jobs restore from (the default start)', load: async () => (await import('./template.js')).templateMain },
};

function help(): string {
  const cmds = Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(10)}${c.summary}`).join('\n');
  return `Usage: jobrunner [options]          run the service: queue/ -> qemu -> done/ | failed/
       jobrunner COMMAND [args]      (COMMAND --help for its own options)

Commands:
${cmds}

Service options (also from a JSON config file: --config FILE, else $JOBRUNNER_CONFIG,
~/.jobrunner.json, /etc/jobrunner.json; precedence: defaults < file < environment < flags):
  --config FILE               read settings from this JSON file
${settingsHelp()}
  -h, --help                  this help
  --version                   print the version

Job images are *.img (raw ext2/3/4, see scripts/mkimage) or *.img.xz files placed in the queue.
Write them as NAME.img.part (or a dotfile) and rename when complete; NAME@BASE.img runs on
base-image/BASE. Results: done/NAME.{img.xz,json,log} or failed/NAME.{img.xz,json,log}.
`;
}

/** Dispatch argv to a command, or to the service. */
export async function main(argv: string[]): Promise<number> {
  const first = argv[0];
  if (first === '-h' || first === '--help' || first === 'help') { process.stdout.write(help()); return 0; }
  if (first === '--version') { process.stdout.write(`jobrunner ${VERSION}\n`); return 0; }
  if (first === undefined || first.startsWith('-') || first === 'serve') {
    const { serviceMain } = await import('./service.js');
    return serviceMain(first === 'serve' ? argv.slice(1) : argv);
  }
  const cmd = COMMANDS[first];
  if (!cmd) throw new JrError('JR_E_USAGE', `unknown command '${first}' (jobrunner --help lists them)`);
  return (await cmd.load())(argv.slice(1));
}

if (isMain(import.meta.url)) runMain('jobrunner', main);
