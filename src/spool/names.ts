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
  if (file.endsWith('.img.xz')) { stem = file.slice(0, -7); compressed = true; }
  else if (file.endsWith('.img')) stem = file.slice(0, -4);
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
