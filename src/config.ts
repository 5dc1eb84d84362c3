// The service configuration (convict): every setting has a default, a doc line, a --flag and a
// JOBRUNNER_* env var, and may come from a JSON file. Validated once, here, where it enters.
// Precedence, lowest first: defaults < config file < environment < command line.
import convict from 'convict';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { JrError } from './errors.js';
import { parseDuration, parseSize } from './units.js';

convict.addFormat({
  name: 'duration',
  validate(v: unknown) {
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new Error('must be a duration such as 90s, 20m or 2h');
  },
  coerce: (v: unknown) => (typeof v === 'number' ? v : parseDuration(String(v)) ?? NaN),
});
convict.addFormat({
  name: 'size',
  validate(v: unknown) {
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new Error('must be a size such as 512M, 2G or a byte count');
  },
  coerce: (v: unknown) => (typeof v === 'number' ? v : parseSize(String(v)) ?? NaN),
});
convict.addFormat({
  name: 'positive-int',
  validate(v: unknown) {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new Error('must be a whole number >= 1');
  },
  coerce: (v: unknown) => (typeof v === 'number' ? v : /^\d+$/.test(String(v)) ? Number(v) : NaN),
});
convict.addFormat({
  name: 'listen',
  validate(v: unknown) {
    if (v !== 'off' && !(typeof v === 'string' && /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(v) && Number(v.slice(v.lastIndexOf(':') + 1)) < 65536)) {
      throw new Error('must be HOST:PORT (127.0.0.1:7480, [::1]:7480, 0.0.0.0:7480) or off');
    }
  },
});
convict.addFormat({
  name: 'xz-preset',
  validate(v: unknown) {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 9) throw new Error('must be an xz preset from 0 to 9');
  },
  coerce: (v: unknown) => (typeof v === 'number' ? v : /^\d$/.test(String(v)) ? Number(v) : NaN),
});

const schema = {
  queue: { doc: 'Spool directory watched for job images (*.img, *.img.xz)', format: String, default: './queue', env: 'JOBRUNNER_QUEUE', arg: 'queue' },
  done: { doc: 'Where succeeded jobs are published', format: String, default: './done', env: 'JOBRUNNER_DONE', arg: 'done' },
  failed: { doc: 'Where failed, timed-out and rejected jobs are published', format: String, default: './failed', env: 'JOBRUNNER_FAILED', arg: 'failed' },
  baseImageDir: { doc: 'Directory holding base images (one sub-directory each)', format: String, default: '', env: 'JOBRUNNER_BASE_IMAGE_DIR', arg: 'base-image-dir' },
  baseImage: { doc: 'Base image for jobs that do not name one (NAME@BASE.img names one)', format: String, default: 'default', env: 'JOBRUNNER_BASE_IMAGE', arg: 'base-image' },
  timeout: { doc: 'Wall-clock limit per job, boot included (90s, 20m, 2h)', format: 'duration', default: '2h', env: 'JOBRUNNER_TIMEOUT', arg: 'timeout' },
  bootTimeout: { doc: 'A guest that shows no sign of life within this is killed (boot-failed)', format: 'duration', default: '3m', env: 'JOBRUNNER_BOOT_TIMEOUT', arg: 'boot-timeout' },
  killGrace: { doc: 'After SIGTERM, how long qemu gets before SIGKILL', format: 'duration', default: '5s', env: 'JOBRUNNER_KILL_GRACE', arg: 'kill-grace' },
  shutdownGrace: { doc: 'On SIGTERM/SIGINT, how long running jobs may finish before they are killed and requeued', format: 'duration', default: '30s', env: 'JOBRUNNER_SHUTDOWN_GRACE', arg: 'shutdown-grace' },
  concurrency: { doc: 'How many VMs run at once', format: 'positive-int', default: 1, env: 'JOBRUNNER_CONCURRENCY', arg: 'concurrency' },
  memory: { doc: 'Guest memory (e.g. 1G, 2048M)', format: 'size', default: '1G', env: 'JOBRUNNER_MEMORY', arg: 'memory' },
  cpus: { doc: 'Guest vCPUs', format: 'positive-int', default: 2, env: 'JOBRUNNER_CPUS', arg: 'cpus' },
  accel: { doc: 'Accelerator: auto (KVM if usable, else TCG), kvm (refuse without it), tcg', format: ['auto', 'kvm', 'tcg'], default: 'auto', env: 'JOBRUNNER_ACCEL', arg: 'accel' },
  network: { doc: 'Guest network: off (no NIC) or user (qemu user-mode NAT)', format: ['off', 'user'], default: 'off', env: 'JOBRUNNER_NETWORK', arg: 'network' },
  init: { doc: 'Guest init: construir (PID 1, fast) or systemd (full boot, then construir.service)', format: ['construir', 'systemd'], default: 'construir', env: 'JOBRUNNER_INIT', arg: 'init' },
  logCap: { doc: 'Console log bytes kept per job (the rest is counted and dropped)', format: 'size', default: '16M', env: 'JOBRUNNER_LOG_CAP', arg: 'log-cap' },
  compressPreset: { doc: 'xz preset (0-9) for published results: 1 is 4-9x faster than 6 for 11-19% more bytes (docs/COMPRESSION.md)', format: 'xz-preset', default: 1, env: 'JOBRUNNER_COMPRESS_PRESET', arg: 'compress-preset' },
  maxImageSize: { doc: 'Largest job image accepted (apparent size, and after decompressing .img.xz)', format: 'size', default: '64G', env: 'JOBRUNNER_MAX_IMAGE_SIZE', arg: 'max-image-size' },
  maxAttempts: { doc: 'A job interrupted this many times (service crashes) fails as interrupted', format: 'positive-int', default: 3, env: 'JOBRUNNER_MAX_ATTEMPTS', arg: 'max-attempts' },
  settle: { doc: 'A queued file must be unchanged this long before it is claimed (slow copies)', format: 'duration', default: '2s', env: 'JOBRUNNER_SETTLE', arg: 'settle' },
  rescanInterval: { doc: 'Full rescan of the queue this often (file events can be lost)', format: 'duration', default: '30s', env: 'JOBRUNNER_RESCAN_INTERVAL', arg: 'rescan-interval' },
  once: { doc: 'Process what is queued (and what arrives meanwhile) until the queue is empty, then exit 0', format: Boolean, default: false, env: 'JOBRUNNER_ONCE', arg: 'once' },
  qemu: { doc: 'The qemu system emulator binary', format: String, default: 'qemu-system-x86_64', env: 'JOBRUNNER_QEMU', arg: 'qemu' },
  runAs: { doc: 'Unprivileged user qemu runs as when started as root ("" keeps root: not for untrusted jobs)', format: String, default: 'jobrunner-qemu', env: 'JOBRUNNER_RUN_AS', arg: 'run-as' },
  sandbox: { doc: 'qemu seccomp sandbox (-sandbox on with deny options)', format: Boolean, default: true, env: 'JOBRUNNER_SANDBOX', arg: 'sandbox' },
  // --- isolation (issue 12): vm or unshare (bubblewrap), chosen by the operator, never by the job ---
  isolation: { doc: 'How jobs are isolated: vm (qemu; the strong boundary) or unshare (bubblewrap namespaces: native speed, the host kernel is the boundary; docs/SECURITY.md)', format: ['vm', 'unshare'], default: 'vm', env: 'JOBRUNNER_ISOLATION', arg: 'isolation' },
  unshareUidBase: { doc: 'unshare: first of the 65536 host uids/gids that root..65535 inside the sandbox map to (scripts/setup reserves it in /etc/subuid and /etc/subgid)', format: 'positive-int', default: 700000000, env: 'JOBRUNNER_UNSHARE_UID_BASE', arg: 'unshare-uid-base' },
  unshareCache: { doc: 'unshare: where the ownership-shifted copy of each base image\'s root is kept', format: String, default: '/var/cache/jobrunner/unshare', env: 'JOBRUNNER_UNSHARE_CACHE', arg: 'unshare-cache' },
  unsharePids: { doc: 'unshare: most processes a job may have at once (pids cgroup, else RLIMIT_NPROC)', format: 'positive-int', default: 2048, env: 'JOBRUNNER_UNSHARE_PIDS', arg: 'unshare-pids' },
  unshareScratch: { doc: 'unshare: size of the throwaway writable layer over the base root (a sparse ext4 per job; changes outside /job land there and vanish)', format: 'size', default: '4G', env: 'JOBRUNNER_UNSHARE_SCRATCH', arg: 'unshare-scratch' },
  // --- end isolation ---
  backend: { doc: 'Where claimed jobs run: local (this host) or slurm (sbatch of `jobrunner node-run` on a cluster sharing the spool; docs/SCALE-OUT.md)', format: ['local', 'slurm'], default: 'local', env: 'JOBRUNNER_BACKEND', arg: 'backend' },
  slurmPartition: { doc: 'Slurm partition for job VMs ("" = the cluster default)', format: String, default: '', env: 'JOBRUNNER_SLURM_PARTITION', arg: 'slurm-partition' },
  slurmAccount: { doc: 'Slurm account for job VMs ("" = none)', format: String, default: '', env: 'JOBRUNNER_SLURM_ACCOUNT', arg: 'slurm-account' },
  slurmArgs: { doc: 'Extra sbatch options, whitespace-separated (e.g. "--qos=build --constraint=fast")', format: String, default: '', env: 'JOBRUNNER_SLURM_ARGS', arg: 'slurm-args' },
  slurmPoll: { doc: 'How often the Slurm backend polls squeue and the outcome files', format: 'duration', default: '500ms', env: 'JOBRUNNER_SLURM_POLL', arg: 'slurm-poll' },
  // --- deps (issue 11): caps on what a job manifest (jobrunner.json) may ask for, and the deps cache.
  maxMemory: { doc: 'Most guest memory a job manifest may ask for', format: 'size', default: '4G', env: 'JOBRUNNER_MAX_MEMORY', arg: 'max-memory' },
  maxCpus: { doc: 'Most guest vCPUs a job manifest may ask for', format: 'positive-int', default: 4, env: 'JOBRUNNER_MAX_CPUS', arg: 'max-cpus' },
  maxTimeout: { doc: 'Longest timeout a job manifest may ask for', format: 'duration', default: '6h', env: 'JOBRUNNER_MAX_TIMEOUT', arg: 'max-timeout' },
  maxDisk: { doc: 'Most job-disk free space a job manifest may ask for', format: 'size', default: '32G', env: 'JOBRUNNER_MAX_DISK', arg: 'max-disk' },
  depsCache: { doc: 'Cache of fetched .debs and derived base layers ("" = <base-image-dir>/../deps-cache)', format: String, default: '', env: 'JOBRUNNER_DEPS_CACHE', arg: 'deps-cache' },
  depsCacheSize: { doc: 'Bound on the deps cache; least recently used layers and .debs go first', format: 'size', default: '20G', env: 'JOBRUNNER_DEPS_CACHE_SIZE', arg: 'deps-cache-size' },
  // --- end deps
  start: { doc: 'How a job VM starts: restore (from a saved, pre-booted template of the base image, built on first need; falls back to cold with a warning) or cold (a full boot)', format: ['restore', 'cold'], default: 'restore', env: 'JOBRUNNER_START', arg: 'start' },
  // The HTTP API and dashboard (issue 14, src/http).
  listen: { doc: 'HTTP API and dashboard address HOST:PORT, or off', format: 'listen', default: '127.0.0.1:7480', env: 'JOBRUNNER_LISTEN', arg: 'listen' },
  tokens: { doc: 'API token file (sha256 of each token, mode 0600); "" = jobrunner.tokens.json beside the config file', format: String, default: '', env: 'JOBRUNNER_TOKENS', arg: 'tokens' },
  publicRead: { doc: 'Let anyone read job status, logs and results on a non-loopback --listen (loopback is always open)', format: Boolean, default: false, env: 'JOBRUNNER_PUBLIC_READ', arg: 'public-read' },
  httpIdleTimeout: { doc: 'An HTTP connection silent this long is closed (stalled uploads, slow-drip bodies)', format: 'duration', default: '60s', env: 'JOBRUNNER_HTTP_IDLE_TIMEOUT', arg: 'http-idle-timeout' },
  diskReserve: { doc: 'Uploads are refused (507) when they would leave less than this free in the queue', format: 'size', default: '1G', env: 'JOBRUNNER_DISK_RESERVE', arg: 'disk-reserve' },
  logLevel: { doc: 'Log level: fatal, error, warn, info, debug, trace', format: ['fatal', 'error', 'warn', 'info', 'debug', 'trace'], default: 'info', env: 'JOBRUNNER_LOG_LEVEL', arg: 'log-level' },
};

export type Settings = {
  queue: string; done: string; failed: string; baseImageDir: string; baseImage: string;
  timeout: number; bootTimeout: number; killGrace: number; shutdownGrace: number;
  concurrency: number; memory: number; cpus: number;
  accel: 'auto' | 'kvm' | 'tcg'; network: 'off' | 'user'; init: 'construir' | 'systemd';
  logCap: number; compressPreset: number; maxImageSize: number; maxAttempts: number; settle: number; rescanInterval: number;
  once: boolean; qemu: string; runAs: string; sandbox: boolean; logLevel: string;
  isolation: 'vm' | 'unshare'; unshareUidBase: number; unshareCache: string; unsharePids: number; unshareScratch: number;
  backend: 'local' | 'slurm'; slurmPartition: string; slurmAccount: string; slurmArgs: string; slurmPoll: number;
  // deps (issue 11)
  maxMemory: number; maxCpus: number; maxTimeout: number; maxDisk: number; depsCache: string; depsCacheSize: number;
  start: 'restore' | 'cold';
  listen: string; tokens: string; publicRead: boolean; diskReserve: number; httpIdleTimeout: number;
};
export type SettingKey = keyof Settings;

/** The repository root (where base-image/ lives by default). */
export const REPO_ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');

const ARG_TO_KEY = new Map(Object.entries(schema).map(([k, v]) => [v.arg, k as SettingKey]));
const BOOLEAN_ARGS = new Set(Object.values(schema).filter((v) => v.format === Boolean).map((v) => v.arg));

/** Which config file applies: --config, else $JOBRUNNER_CONFIG, ~/.jobrunner.json, /etc/jobrunner.json. */
export function findConfigFile(explicit: string | undefined, env: NodeJS.ProcessEnv): string | null {
  if (explicit) return explicit;
  if (env.JOBRUNNER_CONFIG) return env.JOBRUNNER_CONFIG;
  for (const f of [path.join(env.HOME ?? os.homedir(), '.jobrunner.json'), '/etc/jobrunner.json']) {
    if (existsSync(f)) return f;
  }
  return null;
}

/**
 * Load settings from argv flags (only the ones in `allowed`, default all), env and config file.
 * Unknown flags are an error, not silently ignored. Returns the settings and the leftover words.
 */
export function loadSettings(argv: string[], env: NodeJS.ProcessEnv = process.env, allowed?: readonly SettingKey[]):
{ settings: Settings; rest: string[]; configFile: string | null } {
  const rest: string[] = [];
  const flags: string[] = [];
  let configFlag: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') { rest.push(...argv.slice(i + 1)); break; }
    if (!a.startsWith('--') || a === '--') { rest.push(a); continue; }
    const eq = a.indexOf('=');
    const name = a.slice(2, eq < 0 ? undefined : eq);
    const negated = name.startsWith('no-') && BOOLEAN_ARGS.has(name.slice(3));
    const key = ARG_TO_KEY.get(negated ? name.slice(3) : name);
    if (name === 'config') {
      configFlag = eq < 0 ? argv[++i] : a.slice(eq + 1);
      if (!configFlag) throw new JrError('JR_E_CONFIG', 'Expected --config to be followed by a file name');
      continue;
    }
    if (!key || (allowed && !allowed.includes(key))) throw new JrError('JR_E_USAGE', `unknown option --${name} (see --help)`);
    if (BOOLEAN_ARGS.has(negated ? name.slice(3) : name)) {
      flags.push(`--${negated ? name.slice(3) : name}=${eq < 0 ? String(!negated) : a.slice(eq + 1)}`);
      continue;
    }
    const value = eq < 0 ? argv[++i] : a.slice(eq + 1);
    if (value === undefined) throw new JrError('JR_E_USAGE', `Expected --${name} to be followed by a value`);
    flags.push(`--${name}=${value}`);
  }
  const conf = convict(schema, { args: flags, env: env as Record<string, string> });
  const file = findConfigFile(configFlag, env);
  try {
    if (file) conf.loadFile(file);
    conf.validate({ allowed: 'strict' });
  } catch (e) {
    const where = file ? ` (config file ${file}, environment and flags)` : '';
    throw new JrError('JR_E_CONFIG', `invalid configuration${where}: ${(e as Error).message}`, { cause: e });
  }
  const settings = conf.getProperties() as unknown as Settings;
  if (!settings.baseImageDir) settings.baseImageDir = path.join(REPO_ROOT, 'base-image');
  if (!settings.depsCache) settings.depsCache = path.join(settings.baseImageDir, '..', 'deps-cache'); // deps (issue 11)
  settings.tokens = settings.tokens ? path.resolve(settings.tokens) : defaultTokenFile(file, env);
  for (const k of ['queue', 'done', 'failed', 'baseImageDir', 'depsCache'] as const) settings[k] = path.resolve(settings[k]);
  if (settings.memory < 128 * 1024 * 1024) throw new JrError('JR_E_CONFIG', `Expected memory to be at least 128M, got ${settings.memory} bytes`);
  return { settings, rest, configFile: file };
}

/** The token file when --tokens is not given: beside the config file (or where ~/.jobrunner.json would be). */
export function defaultTokenFile(configFile: string | null, env: NodeJS.ProcessEnv): string {
  return path.join(path.dirname(path.resolve(configFile ?? path.join(env.HOME ?? os.homedir(), '.jobrunner.json'))), 'jobrunner.tokens.json');
}

/** `--help` text for the given settings, generated from the schema so it cannot drift. */
export function settingsHelp(keys: readonly SettingKey[] = Object.keys(schema) as SettingKey[]): string {
  const rows = keys.map((k) => {
    const s = schema[k];
    const flag = s.format === Boolean ? `--[no-]${s.arg}` : `--${s.arg} VALUE`;
    const def = s.format === Boolean ? String(s.default) : JSON.stringify(s.default);
    return `  ${flag.padEnd(28)}${s.doc}\n  ${''.padEnd(28)}default ${k === 'baseImageDir' ? '<repo>/base-image' : def}; env ${s.env}`;
  });
  return rows.join('\n');
}
