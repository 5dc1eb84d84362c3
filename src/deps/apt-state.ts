// A private apt state per base image, on the host: the base's own sources, keys, preferences and
// dpkg status (read from its root.img with debugfs: the base image is ours and trusted), so apt's
// resolver answers "what would this base install" without touching the host's apt or dpkg.
// Only apt-get/apt-cache run here, for simulate and download: never dpkg, never a package script.
// The base's apt.conf.d is NOT read: hook options there (APT::Update::Post-Invoke) would run on
// the host; what resolution needs is set in our own apt.conf below.
import { chown, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { BaseImage } from '../image/base.js';
import { extractTree, imageHas, openImage } from '../image/extract-tree.js';
import { JrError } from '../errors.js';
import { run, type RunResult } from '../proc.js';
import { withLock } from './lock.js';

/** Package lists older than this are refreshed (apt-get update) before resolving. */
export const LISTS_MAX_AGE_MS = 24 * 3600_000;

export interface AptState { dir: string; conf: string; baseSha256: string }

/** Where the state for `base` lives in the deps cache. */
export function aptStateDir(cacheDir: string, base: Pick<BaseImage, 'rootSha256'>): string {
  return path.join(cacheDir, 'apt', base.rootSha256.slice(0, 16));
}

function aptConf(dir: string, arch: string): string {
  const q = (p: string): string => JSON.stringify(p);
  return [
    `Dir::Etc ${q(`${dir}/etc/`)};`, `Dir::Etc::Parts ${q(`${dir}/etc/apt.conf.d/`)};`, `Dir::Etc::main ${q(`${dir}/etc/apt.conf`)};`,
    `Dir::Etc::Trusted ${q(`${dir}/etc/trusted.gpg`)};`, `Dir::Etc::TrustedParts ${q(`${dir}/etc/trusted.gpg.d/`)};`,
    `Dir::State ${q(`${dir}/state/`)};`, `Dir::State::status ${q(`${dir}/status`)};`,
    `Dir::Cache ${q(`${dir}/cache/`)};`, `Dir::Log ${q(`${dir}/log/`)};`,
    `APT::Architecture ${q(arch)};`, `APT::Architectures { ${q(arch)}; };`,
    // The guest installs with --no-install-recommends: resolve the same closure here.
    'APT::Install-Recommends "false";', 'APT::Install-Suggests "false";', 'Acquire::Languages "none";',
    'Acquire::IndexTargets::deb::DEP-11::DefaultEnabled "false";', 'Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled "false";',
    '',
  ].join('\n');
}

/** Run apt-get/apt-cache against a private state (APT_CONFIG; C locale so messages are stable). */
export function apt(state: AptState, tool: 'apt-get' | 'apt-cache', args: string[], opts: { cwd?: string } = {}): Promise<RunResult> {
  return run(tool, args, {
    cwd: opts.cwd, reject: false, timeoutMs: 30 * 60_000, maxBuffer: 256 * 1024 * 1024,
    env: { APT_CONFIG: state.conf, LC_ALL: 'C', LANG: 'C', DEBIAN_FRONTEND: 'noninteractive' },
  });
}

/**
 * The private apt state for `base`, made on first use (config from root.img) and its package lists
 * refreshed when missing or older than LISTS_MAX_AGE_MS. Serialised per base across processes.
 */
export async function ensureAptState(cacheDir: string, base: BaseImage): Promise<AptState> {
  const dir = aptStateDir(cacheDir, base);
  const state: AptState = { dir, conf: path.join(dir, 'apt.conf'), baseSha256: base.rootSha256 };
  await mkdir(path.dirname(dir), { recursive: true });
  return withLock(`${dir}.lock`, async () => {
    if (!(await stat(path.join(dir, 'status')).catch(() => null))) await populate(dir, base);
    const stamp = await stat(path.join(dir, 'state', 'updated')).catch(() => null);
    if (!stamp || Date.now() - stamp.mtimeMs > LISTS_MAX_AGE_MS) {
      const r = await apt(state, 'apt-get', ['update', '-q']);
      if (r.exitCode !== 0 || /^(E|W): /m.test(r.stderr)) {
        throw new JrError('JR_E_PROCESS', `apt-get update for base ${base.name} failed: ${r.stderr.trim().slice(-1500)}`);
      }
      await writeFile(path.join(dir, 'state', 'updated'), new Date().toISOString());
    }
    return state;
  });
}

async function populate(dir: string, base: BaseImage): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  const tmp = `${dir}.new`;
  await rm(tmp, { recursive: true, force: true });
  for (const d of ['etc/apt.conf.d', 'state/lists/partial', 'cache/archives/partial', 'log']) await mkdir(path.join(tmp, d), { recursive: true });
  // One confined debugfs session for all the reads (src/image/extract-tree.ts).
  const img = await openImage(base.root);
  try {
    for (const p of ['/etc/apt/sources.list', '/etc/apt/sources.list.d', '/etc/apt/trusted.gpg', '/etc/apt/trusted.gpg.d', '/etc/apt/preferences.d']) {
      if (await imageHas(img, p)) await extractTree(img, p, path.join(tmp, 'etc'));
    }
    await extractTree(img, '/var/lib/dpkg/status', tmp);
  } finally {
    await img.close();
  }
  // apt fetches as _apt when it can: let it write its partial dirs (no-op when the user is missing).
  const uid = await aptUid();
  if (uid >= 0) for (const d of ['state/lists/partial', 'cache/archives/partial']) await chown(path.join(tmp, d), uid, 0).catch(() => undefined);
  await writeFile(path.join(tmp, 'apt.conf'), aptConf(dir, base.meta.arch ?? 'amd64'));
  await rename(tmp, dir);
}

/** The uid of apt's unprivileged download user, or -1 when this host has none. */
export async function aptUid(): Promise<number> {
  const passwd = await readFile('/etc/passwd', 'utf8').catch(() => '');
  const line = passwd.split('\n').find((l) => l.startsWith('_apt:'));
  return line ? Number(line.split(':')[2]) : -1;
}
