// The bubblewrap command line of one unshare job and the small init it runs inside: the same
// contract as guest-config/construir (markers, /job/construir.log, /job/construir.exit, exit 127
// for a missing job, the job's clean environment), minus what only a VM needs (mounting the disk,
// powering off). Root inside is uid 0 of a new user namespace whose ids 0..65535 are the host's
// idBase..idBase+65535 (written by us, root, through --userns-block-fd: bwrap alone maps one id).

/** PATH of construir in the guest; the job gets /job/bin in front of it. */
const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** The init run as the sandbox's pid 2 (bwrap's reaper is pid 1); $1 is the marker nonce. */
export const SANDBOX_INIT = `set -u
exec </dev/null 2>&1
nonce=$1
mark() { printf '\\n@@construir:%s:%s@@\\n' "$nonce" "$1"; }
mark start
job=/job/bin/construir
if [ ! -f "$job" ] || [ ! -x "$job" ]; then
  echo "construir: $job is missing or not executable; nothing to run (exit 127)"
  echo "construir: $job is missing or not executable" >> /job/construir.log
  rc=127
else
  ( cd /job && exec env -i PATH=/job/bin:${PATH} HOME=/root TERM=dumb LANG=C.UTF-8 USER=root \\
      JOB_DIR=/job JOB_OUTPUT=/job/output "$job" ) 2>&1 | tee -a /job/construir.log
  rc=\${PIPESTATUS[0]}
fi
echo "$rc" > /job/construir.exit
mark "exit=$rc"
# Background processes the job left behind end with it (the host kills the namespace anyway).
kill -TERM -1 2>/dev/null; sleep 0.3; kill -KILL -1 2>/dev/null
sync
mark end
`;

/**
 * Capabilities (inside the sandbox's user namespace only) of a deps install run, which dpkg and
 * maintainer scripts need: set owners and modes of unpacked files, run as system users (setuid,
 * setgid), file capabilities (setfcap), and signal what they start. No mount, no devices, no
 * network admin, no ptrace, no clock or module loading: those stay out of the bounding set.
 * A job's own run gets none at all.
 */
export const INSTALL_CAPS = ['chown', 'dac_override', 'dac_read_search', 'fowner', 'fsetid', 'setuid', 'setgid', 'setfcap', 'kill'] as const;
export type SandboxCap = typeof INSTALL_CAPS[number];

export interface SandboxSpec {
  /** Host uid/gid that root inside maps to (the first of 65536). */
  idBase: number;
  /** The merged overlay (shifted base root + throwaway upper): the sandbox's /. */
  root: string;
  /** The trusted job filesystem, mounted on the host: the sandbox's /job. */
  job: string;
  /** Size of the sandbox's /tmp tmpfs (its pages count against the memory cgroup). */
  tmpBytes: number;
  nonce: string;
  /** cgroup.procs files to join and prlimit options, from limits.ts. */
  procsFiles: string[];
  rlimits: string[];
  /** Capabilities root inside keeps (default none): INSTALL_CAPS for a deps install. */
  caps?: readonly SandboxCap[];
}

/** bwrap's own arguments: fd 3 is --userns-block-fd, fd 4 --info-fd. */
export function bwrapArgs(spec: SandboxSpec): string[] {
  return [
    // bwrap checks that the sandbox cannot make a user namespace (run.ts set the limit to 0 while it
    // waited on the block fd) and refuses to start otherwise. Its --disable-userns would do that
    // itself, but only for a namespace it maps (not with --userns-block-fd: our 65536-id map).
    '--unshare-user', '--assert-userns-disabled', '--userns-block-fd', '3', '--info-fd', '4', '--uid', '0', '--gid', '0',
    '--unshare-pid', '--unshare-ipc', '--unshare-net', '--unshare-uts', '--unshare-cgroup-try',
    '--hostname', 'jobrunner', '--die-with-parent', '--new-session',
    '--bind', spec.root, '/',
    '--bind', spec.job, '/job',
    '--proc', '/proc', '--dev', '/dev',
    '--perms', '1777', '--size', String(spec.tmpBytes), '--tmpfs', '/tmp',
    '--perms', '0755', '--tmpfs', '/run',
    ...(spec.caps ?? []).flatMap((c) => ['--cap-add', `CAP_${c.toUpperCase()}`]),
    '--chdir', '/', '--clearenv', '--setenv', 'PATH', PATH, '--setenv', 'LANG', 'C.UTF-8',
    '--', '/bin/bash', '-c', SANDBOX_INIT, 'construir', spec.nonce,
  ];
}

/** The exit status of the argv's first step when it could not join a cgroup (bwrap never started). */
export const JOIN_FAILED = 125;

/**
 * The full argv: a shell that puts itself in the job's cgroups (as root, before anything of the
 * job exists; any failure ends it with JOIN_FAILED), then rlimits, then setpriv drops to idBase
 * with no capabilities and no way back, dying with us; bwrap builds the namespaces from there, unprivileged.
 */
export function sandboxArgv(spec: SandboxSpec): string[] {
  const join = 'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || { echo "jobrunner: could not join the cgroup $1" >&2; exit ' +
    `${JOIN_FAILED}; }; shift; n=$((n-1)); done; exec "$@"`;
  const prlimit = spec.rlimits.length ? ['prlimit', ...spec.rlimits, '--'] : [];
  return ['sh', '-c', join, 'sh', String(spec.procsFiles.length), ...spec.procsFiles, ...prlimit,
    ...dropTo(spec.idBase, spec.caps ?? []), 'bwrap', ...bwrapArgs(spec)];
}

/**
 * setpriv to an unprivileged id: no groups, no capabilities, no_new_privs, killed with its parent.
 * The bounding set is empty, or holds only `keep`: what bwrap may grant root inside its user
 * namespace can never exceed it. (A user namespace made *inside* that one would start with every
 * capability again, over nothing of the host's: the sandbox may make none, see USERNS_SYSCTL.)
 */
export function dropTo(id: number, keep: readonly SandboxCap[] = []): string[] {
  const bounding = ['-all', ...keep.map((c) => `+${c}`)].join(',');
  return ['setpriv', `--reuid=${id}`, `--regid=${id}`, '--clear-groups', '--inh-caps=-all', `--bounding-set=${bounding}`,
    '--no-new-privs', '--pdeathsig', 'KILL', '--'];
}

/** The uid_map/gid_map line: 65536 ids from 0 inside to idBase outside. */
export const idMap = (idBase: number): string => `0 ${idBase} 65536\n`;

/**
 * The sysctl that bounds how many user namespaces may be made inside a user namespace. It is per
 * namespace: written from inside the sandbox's (by root, before the sandbox runs anything) as 0,
 * nothing in the sandbox can make one, and raising it again needs CAP_SYS_RESOURCE there, which
 * neither a job nor an install has (not in INSTALL_CAPS, bounded by setpriv).
 */
export const USERNS_SYSCTL = '/proc/sys/user/max_user_namespaces';
