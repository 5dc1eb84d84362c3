// `jobrunner deps list|prune`: what the deps cache holds (derived layers, .debs) and LRU eviction.
import { loadSettings, settingsHelp, type SettingKey } from '../config.js';
import { JrError } from '../errors.js';
import { listCache, pruneCache } from '../deps/cache.js';
import { formatBytes } from '../units.js';

const KEYS: SettingKey[] = ['depsCache', 'depsCacheSize', 'baseImageDir'];

export const DEPS_HELP = `Usage: jobrunner deps list [--json] [options]
       jobrunner deps prune [options]

The deps cache holds the .debs fetched for job manifests (debs/SHA256.deb) and the derived base
layers built from them (layers/KEY.qcow2 for the VM or KEY.ext4 for --isolation unshare, + KEY.json;
KEY = sha256 of the runner kind, base image and package set).
  list    every layer (its packages) and the .debs, least recently used first
  prune   evict least recently used entries until the cache fits --deps-cache-size
          (entries used in the last 10 minutes are kept: a job may be about to boot on them)

Options:
  --json                      list as JSON
${settingsHelp(KEYS)}
  -h, --help                  this help
`;

/** Entry point of `jobrunner deps`; returns the exit code. */
export async function depsMain(argv: string[]): Promise<number> {
  if (argv.includes('-h') || argv.includes('--help')) { process.stdout.write(DEPS_HELP); return 0; }
  const json = argv.includes('--json');
  const { settings, rest } = loadSettings(argv.filter((a) => a !== '--json'), process.env, KEYS);
  const [sub, ...extra] = rest;
  if (extra.length > 0 || (sub !== 'list' && sub !== 'prune')) throw new JrError('JR_E_USAGE', `Expected 'deps list' or 'deps prune', got ${JSON.stringify(rest.join(' '))} (see jobrunner deps --help)`);
  if (sub === 'prune') {
    const gone = await pruneCache(settings.depsCache, settings.depsCacheSize);
    const bytes = gone.reduce((n, e) => n + e.bytes, 0);
    process.stdout.write(`removed ${gone.filter((e) => e.kind === 'layer').length} layers and ${gone.filter((e) => e.kind === 'deb').length} .debs (${formatBytes(bytes)}) from ${settings.depsCache}\n`);
    return 0;
  }
  const entries = await listCache(settings.depsCache);
  if (json) { process.stdout.write(`${JSON.stringify(entries.map(({ files: _f, ...e }) => e), null, 2)}\n`); return 0; }
  const total = entries.reduce((n, e) => n + e.bytes, 0);
  for (const e of entries.filter((x) => x.kind === 'layer')) {
    process.stdout.write(`layer ${e.id.slice(0, 16)}  ${formatBytes(e.bytes).padStart(9)}  used ${e.lastUsed.toISOString()}  ${e.packages?.join(' ')}\n`);
  }
  const debs = entries.filter((x) => x.kind === 'deb');
  process.stdout.write(`${debs.length} .debs, ${formatBytes(debs.reduce((n, e) => n + e.bytes, 0))}; cache total ${formatBytes(total)} of ${formatBytes(settings.depsCacheSize)} (${settings.depsCache})\n`);
  return 0;
}
