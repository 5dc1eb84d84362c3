// The job manifest, /jobrunner.json at the top of a job image: what the job needs (packages) and
// asks for (memory, cpus, timeout, disk, publish). Hostile input: every field is checked here, once,
// unknown fields are refused, and requests above the operator's limits reject the job.
import { JrError } from '../errors.js';
import { formatBytes, formatDuration, parseDuration, parseSize } from '../units.js';
import { relationError } from './debian-syntax.js';

/** Largest manifest read from an image; bigger is refused unread. */
export const MANIFEST_MAX_BYTES = 64 * 1024;
/** Most relations one manifest may list (a real build-dep list is tens, not thousands). */
export const MANIFEST_MAX_PACKAGES = 500;
/** Where the manifest lives inside a job image (the image's root is the guest's /job). */
export const MANIFEST_PATH = '/jobrunner.json';

export interface Manifest {
  /** Debian relations to install before the job runs (`foo`, `foo (>= 1.2)`, `a | b`). */
  packages: string[];
  /** Relations that must not be installed (Build-Conflicts). */
  conflicts: string[];
  memory: number | null;
  cpus: number | null;
  timeout: number | null;
  disk: number | null;
  /** What done/ holds: the whole job image (default) or /job/output as NAME.output.tar.xz. */
  publish: 'image' | 'output';
}

/** The operator's caps on what a manifest may ask for (bytes, count, ms, bytes). */
export interface ManifestLimits { maxMemory: number; maxCpus: number; maxTimeout: number; maxDisk: number }

const FIELDS = new Set(['packages', 'conflicts', 'memory', 'cpus', 'timeout', 'disk', 'publish']);

const bad = (msg: string): JrError => new JrError('JR_E_INPUT', `jobrunner.json: ${msg}`);
const shown = (v: unknown): string => {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
};

/** The manifest a job without jobrunner.json gets: nothing extra, the service's defaults. */
export function emptyManifest(): Manifest {
  return { packages: [], conflicts: [], memory: null, cpus: null, timeout: null, disk: null, publish: 'image' };
}

/** Parse and validate manifest text; throws JR_E_INPUT naming the field and what was expected. */
export function parseManifest(text: string | Buffer, limits: ManifestLimits): Manifest {
  const bytes = typeof text === 'string' ? Buffer.byteLength(text) : text.length;
  if (bytes > MANIFEST_MAX_BYTES) throw bad(`Expected at most ${MANIFEST_MAX_BYTES} bytes, got ${bytes}`);
  let doc: unknown;
  try {
    doc = JSON.parse(typeof text === 'string' ? text : text.toString('utf8'));
  } catch (e) {
    throw bad(`not valid JSON: ${(e as Error).message}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw bad(`Expected a JSON object, got ${shown(doc)}`);
  const obj = doc as Record<string, unknown>;
  const unknown = Object.keys(obj).filter((k) => !FIELDS.has(k));
  if (unknown.length > 0) throw bad(`unknown field ${shown(unknown[0])} (known: ${[...FIELDS].join(', ')})`);

  const m = emptyManifest();
  m.packages = relations(obj.packages, 'packages');
  m.conflicts = relations(obj.conflicts, 'conflicts');
  if (m.packages.length + m.conflicts.length > MANIFEST_MAX_PACKAGES) {
    throw bad(`Expected at most ${MANIFEST_MAX_PACKAGES} packages and conflicts together, got ${m.packages.length + m.conflicts.length}`);
  }
  m.memory = capped(obj.memory, 'memory', parseSize, limits.maxMemory, 'max-memory', formatBytes);
  if (m.memory !== null && m.memory < 128 * 1024 * 1024) throw bad(`Expected memory to be at least 128M, got ${shown(obj.memory)}`);
  m.timeout = capped(obj.timeout, 'timeout', parseDuration, limits.maxTimeout, 'max-timeout', formatDuration);
  m.disk = capped(obj.disk, 'disk', parseSize, limits.maxDisk, 'max-disk', formatBytes);
  if (obj.cpus !== undefined) {
    if (typeof obj.cpus !== 'number' || !Number.isInteger(obj.cpus) || obj.cpus < 1) throw bad(`Expected cpus to be a whole number >= 1, got ${shown(obj.cpus)}`);
    if (obj.cpus > limits.maxCpus) throw bad(`cpus ${obj.cpus} is above this service's limit (--max-cpus ${limits.maxCpus})`);
    m.cpus = obj.cpus;
  }
  if (obj.publish !== undefined) {
    if (obj.publish !== 'image' && obj.publish !== 'output') throw bad(`Expected publish to be "image" or "output", got ${shown(obj.publish)}`);
    m.publish = obj.publish;
  }
  return m;
}

function relations(v: unknown, field: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw bad(`Expected ${field} to be an array of Debian package relations, got ${shown(v)}`);
  if (v.length > MANIFEST_MAX_PACKAGES) throw bad(`Expected at most ${MANIFEST_MAX_PACKAGES} ${field}, got ${v.length}`);
  return v.map((r, i) => {
    if (typeof r !== 'string') throw bad(`Expected ${field}[${i}] to be a string, got ${shown(r)}`);
    const err = relationError(r.trim());
    if (err) throw bad(`Expected ${field}[${i}] to be a Debian relation such as "foo", "foo (>= 1.2)" or "a | b", got ${shown(r)}: ${err}`);
    return r.trim().replace(/\s+/g, ' ');
  });
}

function capped(v: unknown, field: string, parse: (s: string | number) => number | null, max: number, flag: string,
  fmt: (n: number) => string): number | null {
  if (v === undefined) return null;
  if (typeof v !== 'string' && typeof v !== 'number') throw bad(`Expected ${field} to be a string such as "2G" or "1h", got ${shown(v)}`);
  const n = parse(v);
  if (n === null || !Number.isFinite(n) || n <= 0) throw bad(`Expected ${field} to be a positive ${field === 'timeout' ? 'duration (90s, 20m, 2h)' : 'size (512M, 2G)'}, got ${shown(v)}`);
  if (n > max) throw bad(`${field} ${shown(v)} is above this service's limit (--${flag} ${fmt(max)})`);
  return n;
}
