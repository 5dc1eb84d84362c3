// Test set-up: a Debian source package (.dsc and its files) fetched with `apt-get source
// --download-only` through a private apt state (never the host's /etc/apt or dpkg), and cached
// like the debootstrap debs so later runs need no network. Nothing is unpacked or built here:
// the guest does that.
import { existsSync } from 'node:fs';
import { mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { runProc } from '../helpers.js';

/** Where fetched sources are kept: $JOBRUNNER_CACHE_DIR/../sources, else /var/cache/jobrunner/sources. */
export function sourceCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.JOBRUNNER_CACHE_DIR ? path.join(path.dirname(env.JOBRUNNER_CACHE_DIR), 'sources') : '/var/cache/jobrunner/sources';
}

function aptConf(dir: string): string {
  const q = (p: string): string => JSON.stringify(p);
  return [
    `Dir::Etc ${q(`${dir}/etc/`)};`, `Dir::Etc::Parts ${q(`${dir}/etc/apt.conf.d/`)};`, `Dir::Etc::main ${q(`${dir}/etc/apt.conf`)};`,
    `Dir::Etc::TrustedParts ${q(`${dir}/etc/trusted.gpg.d/`)};`, `Dir::State ${q(`${dir}/state/`)};`, 'Dir::State::status "/dev/null";',
    `Dir::Cache ${q(`${dir}/cache/`)};`, `Dir::Log ${q(`${dir}/log/`)};`, 'Acquire::Languages "none";',
    // Only source indices and tarballs are fetched (nothing is unpacked): no need for the _apt user.
    'APT::Sandbox::User "root";', '',
  ].join('\n');
}

/**
 * The .dsc of source package `pkg` from `suite` (Debian's archive, signed by the host's
 * debian-archive-keyring), fetched once into the cache; returns its path.
 */
export async function debianSource(pkg: string, suite = 'bookworm', mirror = 'http://deb.debian.org/debian'): Promise<string> {
  const root = sourceCacheDir();
  const dest = path.join(root, suite, pkg);
  const have = existsSync(dest) ? (await readdir(dest)).find((f) => f.endsWith('.dsc')) : undefined;
  if (have) return path.join(dest, have);
  const apt = path.join(root, suite, '.apt');
  for (const d of ['etc/apt.conf.d', 'etc/trusted.gpg.d', 'etc/preferences.d', 'state/lists/partial', 'cache/archives/partial', 'log']) {
    await mkdir(path.join(apt, d), { recursive: true });
  }
  await writeFile(path.join(apt, 'etc', 'sources.list'), `deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${mirror} ${suite} main\n`);
  await writeFile(path.join(apt, 'apt.conf'), aptConf(apt));
  const env = { APT_CONFIG: path.join(apt, 'apt.conf'), LC_ALL: 'C' };
  const up = await runProc('apt-get', ['update', '-q'], { env, timeoutMs: 300_000 });
  if (up.code !== 0 || /^(E|W): /m.test(up.stderr)) throw new Error(`apt-get update (deb-src ${suite}) failed: ${up.stderr}`);
  const part = `${dest}.part`;
  await rm(part, { recursive: true, force: true });
  await mkdir(part, { recursive: true });
  const r = await runProc('apt-get', ['source', '--download-only', '-q', pkg], { env, cwd: part, timeoutMs: 300_000 });
  if (r.code !== 0) throw new Error(`apt-get source --download-only ${pkg} failed: ${r.stderr}`);
  const dsc = (await readdir(part)).find((f) => f.endsWith('.dsc'));
  if (!dsc) throw new Error(`apt-get source ${pkg} left no .dsc in ${part}`);
  await rename(part, dest);
  return path.join(dest, dsc);
}
