// Submitted file names -> what the service does with them. Names are untrusted: they are only ever
// used to name results (never given to qemu, a shell, or an option string).

export interface Submission {
  /** The file name as found in queue/. */
  file: string;
  /** NAME: the result is published as NAME.img.xz / NAME.json / NAME.log. */
  name: string;
  /** Base image requested with NAME@BASE.img, else null (the configured default). */
  base: string | null;
  compressed: boolean;
}

/** Files the service ignores entirely: dotfiles (incl. .running) and in-progress *.part uploads. */
export function isIgnored(file: string): boolean {
  return file.startsWith('.') || file.endsWith('.part');
}

/** Parse a queue entry name; null when it is not a job submission (not *.img or *.img.xz). */
export function parseSubmission(file: string): Submission | null {
  if (isIgnored(file) || file.includes('/')) return null;
  let stem: string;
  let compressed = false;
  if (file.endsWith('.img.xz')) { stem = file.slice(0, -7); compressed = true; } else if (file.endsWith('.img')) stem = file.slice(0, -4);
  else return null;
  let base: string | null = null;
  const at = stem.lastIndexOf('@');
  if (at > 0) { base = stem.slice(at + 1); stem = stem.slice(0, at); }
  if (stem === '') stem = 'job';
  return { file, name: resultName(stem), base, compressed };
}

/**
 * A result name safe to create in done/ and failed/: at most 200 bytes (room for -N and the
 * extension within NAME_MAX), with control characters replaced, never starting with '.' or '-'.
 */
export function resultName(stem: string): string {
  let s = stem.replace(/[\x00-\x1f\x7f/]/g, '_').replace(/^[.-]+/, (m) => '_'.repeat(m.length));
  if (s === '') s = 'job';
  while (Buffer.byteLength(s) > 200) s = s.slice(0, -1);
  return s;
}

/** True when `file` names a job submission (*.img or *.img.xz, not ignored). */
export function isSubmissionName(file: string): boolean {
  return parseSubmission(file) !== null;
}

const NAME_MAX = 255;
const strict = new TextDecoder('utf-8', { fatal: true });

/** Split raw name bytes into valid UTF-8 characters (strings) and undecodable bytes (numbers). */
function pieces(raw: Buffer): Array<string | number> {
  const out: Array<string | number> = [];
  for (let i = 0; i < raw.length;) {
    let took = 0;
    // A UTF-8 sequence is 1-4 bytes; the shortest length that decodes to one code point is it.
    for (let n = 1; n <= 4 && i + n <= raw.length && took === 0; n++) {
      try {
        const s = strict.decode(raw.subarray(i, i + n));
        if ([...s].length === 1) { out.push(s); took = n; }
      } catch { /* not a complete sequence of length n */ }
    }
    if (took === 0) { out.push(raw[i]!); took = 1; }
    i += took;
  }
  return out;
}

/** True when the name bytes are valid UTF-8 (Node strings hold them without loss). */
export function isUtf8Name(raw: Buffer): boolean {
  return Buffer.from(raw.toString('utf8'), 'utf8').equals(raw);
}

/** The raw name for people and status files: valid characters kept, undecodable bytes as \xNN. */
export function showName(raw: Buffer): string {
  return pieces(raw).map((p) => (typeof p === 'number' ? `\\x${p.toString(16).padStart(2, '0')}` : p)).join('');
}

/**
 * A UTF-8 queue name for an undecodable one: each bad byte becomes %XX, the .img/.img.xz suffix is
 * kept and the result fits NAME_MAX. `n` > 0 adds -n before the suffix (to avoid an existing name).
 */
export function safeQueueName(raw: Buffer, n = 0): string {
  const lossy = raw.toString('utf8');
  const suffix = lossy.endsWith('.img.xz') ? '.img.xz' : lossy.endsWith('.img') ? '.img' : '';
  const stemBytes = raw.subarray(0, raw.length - Buffer.byteLength(suffix));
  const tail = `${n > 0 ? `-${n}` : ''}${suffix}`;
  const room = NAME_MAX - Buffer.byteLength(tail);
  let stem = '';
  for (const p of pieces(stemBytes)) {
    const s = typeof p === 'number' ? `%${p.toString(16).toUpperCase().padStart(2, '0')}` : p;
    if (Buffer.byteLength(stem) + Buffer.byteLength(s) > room) break;
    stem += s;
  }
  return `${stem || 'job'}${tail}`;
}
