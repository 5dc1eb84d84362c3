// joot's configuration: a small JSON file found at $JOOT_CONFIG, ~/.joot or /etc/joot.cfg (first that
// exists, as the original joot did), validated where it enters. Every key is optional.
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { JrError } from '../errors.js';

export interface JootConfig {
  /** Where environments, locks and downloaded images live ($JOOT_HOME wins). */
  home: string;
  /** Directories of base images: each <dir>/<name>/root.img (+ image.json). */
  baseImageDirs: string[];
  /** Where `joot import` writes new base images. */
  importDir: string;
  /** Image index: a URL/path of a JSON array, or the array itself; entries are URLs or paths of
   *  base image directories (or their image.json). */
  index: string | string[] | null;
  /** Host files copied into the environment on every enter. */
  copyFiles: string[];
  /** Host environment variables passed through the otherwise clean environment. */
  passEnv: string[];
  /** PATH inside the environment. */
  path: string;
  /** Image used by `joot create NAME` without IMAGE. */
  defaultImage: string;
  /** The file this came from, or null for built-in defaults. */
  configFile: string | null;
}

/** The repository's base-image/ directory (dist/joot/ or src/joot/ -> ../../base-image). */
export function repoBaseImageDir(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'base-image');
}

function defaultHome(): string {
  return process.getuid?.() === 0 ? '/var/lib/joot' : path.join(os.homedir(), '.local', 'share', 'joot');
}

const KEYS = ['home', 'baseImageDirs', 'importDir', 'index', 'copyFiles', 'passEnv', 'path', 'defaultImage'] as const;

function str(file: string, k: string, v: unknown): string {
  if (typeof v !== 'string' || v === '') throw new JrError('JR_E_CONFIG', `Expected \`${k}\` in ${file} to be a non-empty string, got ${JSON.stringify(v)}`);
  return v;
}
function strs(file: string, k: string, v: unknown): string[] {
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string' && x !== '')) {
    throw new JrError('JR_E_CONFIG', `Expected \`${k}\` in ${file} to be an array of strings, got ${JSON.stringify(v)}`);
  }
  return v as string[];
}
function abs(file: string, k: string, p: string): string {
  if (!path.isAbsolute(p)) throw new JrError('JR_E_CONFIG', `Expected \`${k}\` in ${file} to be an absolute path, got ${JSON.stringify(p)}`);
  return p;
}

/** Validate a parsed config object on top of the defaults (pure apart from the defaults). */
export function parseConfig(raw: unknown, file: string, env: NodeJS.ProcessEnv = process.env): JootConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new JrError('JR_E_CONFIG', `Expected ${file} to hold a JSON object, got ${Array.isArray(raw) ? 'an array' : typeof raw}`);
  }
  const o = raw as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!(KEYS as readonly string[]).includes(k)) throw new JrError('JR_E_CONFIG', `Expected keys of ${file} to be among ${KEYS.join(', ')}, got \`${k}\``);
  }
  const baseImageDirs = o.baseImageDirs === undefined ? [repoBaseImageDir()] : strs(file, 'baseImageDirs', o.baseImageDirs).map((p) => abs(file, 'baseImageDirs', p));
  let index: string | string[] | null = null;
  if (typeof o.index === 'string') index = o.index;
  else if (Array.isArray(o.index)) index = strs(file, 'index', o.index);
  else if (o.index !== undefined && o.index !== null) {
    throw new JrError('JR_E_CONFIG', `Expected \`index\` in ${file} to be a URL, a path or an array of them, got ${JSON.stringify(o.index)}`);
  }
  const home = env.JOOT_HOME || (o.home === undefined ? defaultHome() : abs(file, 'home', str(file, 'home', o.home)));
  return {
    home: path.resolve(home),
    baseImageDirs,
    importDir: o.importDir === undefined ? baseImageDirs[0] ?? repoBaseImageDir() : abs(file, 'importDir', str(file, 'importDir', o.importDir)),
    index,
    copyFiles: o.copyFiles === undefined ? ['/etc/resolv.conf', '/etc/hosts'] : strs(file, 'copyFiles', o.copyFiles).map((p) => abs(file, 'copyFiles', p)),
    passEnv: o.passEnv === undefined ? ['TERM', 'LANG', 'LC_ALL', 'COLORTERM'] : strs(file, 'passEnv', o.passEnv),
    path: o.path === undefined ? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' : str(file, 'path', o.path),
    defaultImage: o.defaultImage === undefined ? 'default' : str(file, 'defaultImage', o.defaultImage),
    configFile: file === '(defaults)' ? null : file,
  };
}

/** Load the config: $JOOT_CONFIG (must exist if set), else ~/.joot, else /etc/joot.cfg, else defaults. */
export async function loadConfig(env: NodeJS.ProcessEnv = process.env): Promise<JootConfig> {
  const candidates = env.JOOT_CONFIG ? [env.JOOT_CONFIG] : [path.join(env.HOME || os.homedir(), '.joot'), '/etc/joot.cfg'];
  for (const file of candidates) {
    let text: string;
    try { text = await readFile(file, 'utf8'); } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' && !env.JOOT_CONFIG) continue;
      throw new JrError('JR_E_CONFIG', `cannot read config ${file}: ${(e as Error).message}`, { cause: e });
    }
    let raw: unknown;
    try { raw = JSON.parse(text); } catch (e) {
      throw new JrError('JR_E_CONFIG', `Expected ${file} to be JSON, got a parse error: ${(e as Error).message}`, { cause: e });
    }
    return parseConfig(raw, file, env);
  }
  return parseConfig({}, '(defaults)', env);
}
