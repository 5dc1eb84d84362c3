// See bench/deps.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { JobStatus } from '../src/spool/record.js';
import { debianSource } from '../test/lib/debian-source.js';
import { ROOT, scratchDir } from './lib.js';

const { values: opts, positionals } = parseArgs({ args: process.argv.slice(2), allowPositionals: true, options: { isolation: { type: 'string', default: 'vm' } } });
if (opts.isolation !== 'vm' && opts.isolation !== 'unshare') throw new Error(`--isolation: vm or unshare, not ${JSON.stringify(opts.isolation)}`);
if (positionals.length > 1) throw new Error('usage: bench/deps [SOURCE-PACKAGE] [--isolation vm|unshare]');
const pkg = positionals[0] ?? 'hello';
const isolation = opts.isolation;
const dir = scratchDir('deps');
chmodSync(dir, 0o755); // apt's _apt download user must reach the deps cache
const spool = { queue: path.join(dir, 'queue'), done: path.join(dir, 'done'), failed: path.join(dir, 'failed') };
mkdirSync(spool.queue);
writeFileSync(path.join(dir, 'config.json'), '{}');
const dsc = await debianSource(pkg);

/** Build `pkg` once as job `name` through `jobrunner --once`; its status record. */
function build(name: string): JobStatus {
  execFileSync(path.join(ROOT, 'scripts', 'mkjob-deb'), [dsc, '-o', path.join(spool.queue, `${name}.img`)], { stdio: 'ignore' });
  execFileSync(path.join(ROOT, 'jobrunner'), ['--isolation', isolation, '--queue', spool.queue, '--done', spool.done, '--failed', spool.failed, '--once',
    '--settle', '200ms', '--deps-cache', path.join(dir, 'deps-cache'), '--timeout', '2h', '--boot-timeout', '10m', '--log-level', 'warn'],
  { env: { ...process.env, JOBRUNNER_CONFIG: path.join(dir, 'config.json') }, stdio: ['ignore', 'inherit', 'inherit'] });
  const st = JSON.parse(readFileSync(path.join(spool.done, `${name}.json`), 'utf8')) as JobStatus;
  if (st.status !== 'succeeded') throw new Error(`${name}: ${st.status}: ${st.reason}`);
  return st;
}

console.log(`bench/deps: ${path.basename(dsc)} built twice with --isolation ${isolation} (fresh deps cache in ${dir})`);
const rows = [build('first'), build('second')].map((st) => {
  const d = st.deps!;
  const depsS = d.durations.resolve + d.durations.fetch + (d.durations.install ?? 0);
  const buildS = (st.durations.boot ?? 0) + (st.durations.run ?? 0);
  return { name: st.name, cacheHit: d.cacheHit, debs: d.downloaded.debs, ...d.durations, depsS, buildS, ratio: depsS / buildS };
});
for (const r of rows) {
  console.log(`${r.name.padEnd(7)} cache ${r.cacheHit ? 'hit ' : 'miss'}  resolve ${r.resolve.toFixed(1)} s  fetch ${r.fetch.toFixed(1)} s (${r.debs} debs)  install ${r.install === null ? '-' : `${r.install.toFixed(1)} s`}  `
    + `deps ${r.depsS.toFixed(1)} s  boot+build ${r.buildS.toFixed(1)} s  deps/build ${(100 * r.ratio).toFixed(1)}%`);
}
const [first, second] = rows as [typeof rows[0], typeof rows[0]];
console.log(`cached deps/build ${(100 * second.ratio).toFixed(1)}% (goal <= 5%): ${second.ratio <= 0.05 ? 'met' : 'NOT met'}; cached deps time / first deps time ${(second.depsS / first.depsS).toFixed(3)}`);
