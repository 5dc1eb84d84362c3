// A Debian source control file (.dsc): the fields a build needs, parsed from deb822 text (an
// OpenPGP clear-signed wrapper is stripped; signatures are dpkg-source's business in the guest).
import { JrError } from '../errors.js';
import { PACKAGE_NAME, isDebianVersion, relationError, splitRelations } from './debian-syntax.js';

export interface Dsc {
  source: string;
  version: string;
  /** Build-Depends + Build-Depends-Arch + Build-Depends-Indep (a -b build needs all three). */
  buildDepends: string[];
  /** Build-Conflicts + Build-Conflicts-Arch + Build-Conflicts-Indep. */
  buildConflicts: string[];
  /** The files the .dsc names (Checksums-Sha256), to sit beside it. */
  files: Array<{ name: string; size: number; sha256: string }>;
}

const bad = (msg: string): JrError => new JrError('JR_E_INPUT', `.dsc: ${msg}`);

/** deb822 fields of the first paragraph; continuation lines joined with newlines. */
export function parseDeb822(text: string): Map<string, string> {
  let body = text.replace(/\r\n/g, '\n');
  if (body.startsWith('-----BEGIN PGP SIGNED MESSAGE-----')) {
    const start = body.indexOf('\n\n');
    const end = body.indexOf('\n-----BEGIN PGP SIGNATURE-----');
    if (start < 0 || end < 0) throw bad('a clear-signed .dsc without its body or signature');
    body = body.slice(start + 2, end);
  }
  const fields = new Map<string, string>();
  let current: string | null = null;
  for (const line of body.split('\n')) {
    if (line.trim() === '') { if (fields.size > 0) break; continue; }
    if (/^[ \t]/.test(line)) {
      if (current === null) throw bad('a continuation line before any field');
      fields.set(current, `${fields.get(current)}\n${line.trim()}`);
      continue;
    }
    const m = /^([A-Za-z0-9][A-Za-z0-9-]*):\s*(.*)$/.exec(line);
    if (!m) throw bad(`not a field: ${JSON.stringify(line.slice(0, 80))}`);
    current = m[1]!.toLowerCase();
    fields.set(current, m[2]!.trim());
  }
  return fields;
}

/** Parse and check a .dsc: names, versions, relations and file names are validated here. */
export function parseDsc(text: string): Dsc {
  const f = parseDeb822(text);
  const source = f.get('source') ?? '';
  const version = f.get('version') ?? '';
  if (!PACKAGE_NAME.test(source)) throw bad(`Expected Source to be a Debian package name, got ${JSON.stringify(source)}`);
  if (!isDebianVersion(version)) throw bad(`Expected Version to be a Debian version, got ${JSON.stringify(version)}`);
  const rels = (names: string[]): string[] => names.flatMap((n) => splitRelations(f.get(n) ?? ''));
  const buildDepends = rels(['build-depends', 'build-depends-arch', 'build-depends-indep']);
  const buildConflicts = rels(['build-conflicts', 'build-conflicts-arch', 'build-conflicts-indep']);
  for (const r of [...buildDepends, ...buildConflicts]) {
    const err = relationError(r);
    if (err) throw bad(`Expected a Debian relation in the build dependencies, got ${JSON.stringify(r)}: ${err}`);
  }
  const files = (f.get('checksums-sha256') ?? '').split('\n').map((l) => l.trim()).filter(Boolean).map((l) => {
    const [sha256, size, name, ...extra] = l.split(/\s+/);
    // Names are joined to the .dsc's directory: nothing but a plain file name is acceptable.
    if (extra.length > 0 || !/^[0-9a-f]{64}$/.test(sha256 ?? '') || !/^\d+$/.test(size ?? '') || !/^[A-Za-z0-9][A-Za-z0-9+._~-]*$/.test(name ?? '')) {
      throw bad(`Expected "sha256 size name" in Checksums-Sha256, got ${JSON.stringify(l.slice(0, 120))}`);
    }
    return { name: name!, size: Number(size), sha256: sha256! };
  });
  if (files.length === 0) throw bad('no Checksums-Sha256 field: cannot check the source files');
  return { source, version, buildDepends, buildConflicts, files };
}
