// Resolve a job's relations with apt's own resolver against the base's private state:
// `apt-get satisfy --simulate` prints the exact closure it would install (Inst lines), or why not.
import { JrError } from '../errors.js';
import { apt, type AptState } from './apt-state.js';

export interface ResolvedPackage { name: string; version: string; arch: string }

/** `name=version` of a resolved package (what the guest's apt-get install is told). */
export const pinOf = (p: ResolvedPackage): string => `${p.name}:${p.arch}=${p.version}`;

/** Parse apt-get -s output: the Inst lines, in apt's order. */
export function parseSimulation(stdout: string): ResolvedPackage[] {
  const out: ResolvedPackage[] = [];
  for (const line of stdout.split('\n')) {
    // Inst NAME [OLDVERSION] (VERSION ORIGIN... [ARCH])
    const m = /^Inst (\S+?)(?::\S+)? (?:\[[^\]]*\] )?\((\S+) .*\[([a-z0-9-]+)\]\)/.exec(line);
    if (m) out.push({ name: m[1]!, version: m[2]!, arch: m[3]! });
  }
  return out;
}

/** apt's own explanation of a failed resolution: the unmet-dependency lines and its E: lines. */
export function aptFailure(stdout: string, stderr: string): string {
  const lines = stdout.split('\n');
  const at = lines.findIndex((l) => /unmet dependencies|Unable to locate package|has no installation candidate/.test(l));
  const why = at < 0 ? [] : lines.slice(at).filter((l) => l.trim() !== '');
  const errors = stderr.split('\n').filter((l) => /^E: /.test(l));
  return [...why, ...errors].join('\n').slice(0, 4000) || stderr.trim().slice(-2000) || 'apt-get failed without a message';
}

/**
 * The closure apt would install for these relations (and conflicts) on the base: sorted by name.
 * An unknown or unsatisfiable package is the job's fault: JR_E_INPUT carrying apt's message.
 */
export async function resolvePackages(state: AptState, packages: string[], conflicts: string[] = []): Promise<ResolvedPackage[]> {
  if (packages.length === 0 && conflicts.length === 0) return [];
  // Each relation is validated Debian syntax (manifest.ts): no word here can be read as an option.
  const args = ['satisfy', '--simulate', '-q', '--no-install-recommends'];
  if (packages.length > 0) args.push(packages.join(', '));
  if (conflicts.length > 0) args.push(`Conflicts: ${conflicts.join(', ')}`);
  const r = await apt(state, 'apt-get', args);
  if (r.exitCode !== 0) {
    throw new JrError('JR_E_INPUT', `the job's packages cannot be installed on this base image; apt says:\n${aptFailure(r.stdout, r.stderr)}`);
  }
  if (/^Remv /m.test(r.stdout)) {
    // Removing a base package would need dpkg's removal scripts in the layer build: say so plainly.
    const removed = r.stdout.split('\n').filter((l) => l.startsWith('Remv ')).map((l) => l.split(' ')[1]).join(', ');
    throw new JrError('JR_E_INPUT', `the job's packages would remove packages of the base image (${removed}); not supported`);
  }
  return parseSimulation(r.stdout).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
