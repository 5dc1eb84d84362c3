// Debian's syntax for package names, versions and relations (policy §5.6.1, §5.6.12, §7.1),
// checked before any of it reaches apt: a manifest string is data, never an option or a shell word.

/** Policy §5.6.1: lower case letters, digits, + - . ; at least two characters; starts alphanumeric. */
export const PACKAGE_NAME = /^[a-z0-9][a-z0-9+.-]+$/;

// Policy §5.6.12: [epoch:]upstream[-revision]. Upstream starts with a digit; ':' only with an epoch,
// '-' only with a revision. Kept as one expression (apt re-checks; this only keeps garbage out).
const VERSION = /^(?:[0-9]+:)?[0-9][A-Za-z0-9.+~:-]*$/;
const ARCH = /^!?[a-z0-9][a-z0-9-]*$/;
const PROFILE = /^!?[a-z0-9][a-z0-9.+-]*$/;
const RELATION_OPS = new Set(['<<', '<=', '=', '>=', '>>']);

/** True when `v` is a syntactically valid Debian version. */
export function isDebianVersion(v: string): boolean {
  if (!VERSION.test(v) || v.length > 200) return false;
  const epoch = /^[0-9]+:/.test(v);
  const rest = epoch ? v.slice(v.indexOf(':') + 1) : v;
  if (!epoch && v.includes(':')) return false;
  if (rest.endsWith('-')) return false;
  return /^[0-9]/.test(rest);
}

/**
 * Check one relation with alternatives, e.g. `libfoo-dev:amd64 (>= 1.2) [amd64] <!nocheck> | bar`.
 * Returns null when valid, else what is wrong (for a "Expected … got …" message).
 */
export function relationError(rel: string): string | null {
  if (rel.length > 1000) return 'longer than 1000 characters';
  if (/[^\x20-\x7e]/.test(rel)) return 'contains a control or non-ASCII character';
  const alts = rel.split('|');
  for (const raw of alts) {
    const alt = raw.trim();
    const m = /^([^\s:([<]+)(?::([a-z0-9-]+))?\s*(?:\(\s*([<=>]+)\s*([^\s)]+)\s*\))?\s*(?:\[([^\]]*)\])?\s*((?:<[^>]*>\s*)*)$/.exec(alt);
    if (!m) return `'${alt}' is not of the form name[:arch] [(op version)] [[archs]] [<profiles>]`;
    const [, name, , op, version, archs, profiles] = m;
    if (!PACKAGE_NAME.test(name!)) return `'${name}' is not a Debian package name (policy 5.6.1: a-z 0-9 + - ., two or more, starting alphanumeric)`;
    if (op !== undefined && !RELATION_OPS.has(op)) return `'${op}' is not a relation operator (<< <= = >= >>)`;
    if (version !== undefined && !isDebianVersion(version)) return `'${version}' is not a Debian version`;
    if (archs !== undefined) {
      const list = archs.trim().split(/\s+/);
      if (list.length === 0 || list.some((a) => !ARCH.test(a))) return `'[${archs}]' is not an architecture list`;
    }
    if (profiles) {
      for (const group of profiles.match(/<[^>]*>/g) ?? []) {
        const terms = group.slice(1, -1).trim().split(/\s+/);
        if (terms.some((t) => !PROFILE.test(t))) return `'${group}' is not a build profile list`;
      }
    }
  }
  return null;
}

/** Split a comma-separated relation field (Build-Depends and friends) into its relations. */
export function splitRelations(field: string): string[] {
  return field.split(',').map((r) => r.replace(/\s+/g, ' ').trim()).filter((r) => r !== '');
}
