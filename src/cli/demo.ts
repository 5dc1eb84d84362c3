// `jobrunner demo`: package examples/hello with mkimage, run it through the service with --once,
// then show the job's output and where the result is. (./jobrunner runs scripts/setup first.)
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { loadSettings, REPO_ROOT } from '../config.js';
import { createLogger } from '../log.js';
import { Service } from '../service.js';
import { Spool } from '../spool/spool.js';
import { parseOwnArgs } from './args.js';
import { main as extract } from './extract.js';
import { VERSION } from '../version.js';
import { main as mkimage } from './mkimage.js';

/** Entry point of `jobrunner demo`. Exit 0 when the hello job succeeded. */
export async function demoMain(argv: string[]): Promise<number> {
  const { values, rest } = parseOwnArgs(argv, { help: { type: 'boolean', short: 'h' } });
  if (values.help) {
    process.stdout.write('Usage: jobrunner demo [service options]\n\nPackages examples/hello, queues it, runs the service with --once, prints the result.\n');
    return 0;
  }
  const { settings } = loadSettings([...rest, '--once']);
  const say = (s: string): void => { process.stdout.write(`\n==> ${s}\n`); };
  say(`packaging examples/hello into ${settings.queue}/hello.img`);
  const stamp = new Date().toISOString();
  await mkdir(settings.queue, { recursive: true });
  const code = await mkimage([path.join(REPO_ROOT, 'examples', 'hello'), '-o', path.join(settings.queue, 'hello.img'), '--extra', '256M']);
  if (code !== 0) return code;
  say('running the service with --once (a TCG boot takes ~10 s)');
  const service = new Service({ settings, logger: createLogger(settings.logLevel), version: VERSION });
  await service.start();
  await service.done;

  // The newest result of this run's hello job.
  const found = (await new Spool(settings).results()).find((x) => x.status.name === 'hello' && x.status.finishedAt >= stamp);
  const r = found && { dir: found.dir, st: found.status };
  if (!r) { process.stderr.write('demo: the hello job did not publish a result (see the log above)\n'); return 1; }
  const base = path.join(r.dir, r.st.publishedAs);
  say(`job ${r.st.status}: ${r.st.reason}`);
  process.stdout.write(`console log (${base}.log):\n${(await readFile(`${base}.log`, 'utf8')).split('\n').filter((l) => !l.startsWith('@@construir') && l.trim()).map((l) => `  | ${l}`).join('\n')}\n`);
  if (r.st.status === 'succeeded') {
    const out = await mkdtemp(path.join(os.tmpdir(), 'demo-output-'));
    try {
      await extract([`${base}.img.xz`, out]);
      say('files the job left in /job/output:');
      for (const f of await readdir(path.join(out, 'output'))) {
        const text = (await readFile(path.join(out, 'output', f), 'utf8')).trim().split('\n');
        process.stdout.write(`  ${f}: ${text.join(`\n  ${' '.repeat(f.length + 2)}`)}\n`);
      }
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  }
  say(`result: ${base}.img.xz (status ${base}.json, console ${base}.log)`);
  process.stdout.write(`    pull files out with: scripts/extract ${base}.img.xz OUTDIR\n`);
  return r.st.status === 'succeeded' ? 0 : 1;
}
