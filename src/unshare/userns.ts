// The sandbox's user namespace while bwrap waits on --userns-block-fd, and how that wait ends.
// bwrap reports its first child's pid on --info-fd; we (root) write the 65536-id map and set the
// namespace's user.max_user_namespaces to 0, then release the block fd. A pid is only a number:
// everything we do to the namespace goes through files opened once, before any write, and checked
// to be that child's (its parent is bwrap, its user namespace is not ours). A child that died and
// whose pid came back as another process fails the check, and the open files stay bound to the
// namespace they were opened on whatever the pid becomes later.
// If any step fails, bwrap's process group is SIGKILLed and the block fd is never released:
// bwrap must not go on with a half-set-up namespace (its --assert-userns-disabled checks only
// that a nested unshare() fails, which an unrelated failure passes too).
import { constants } from 'node:fs';
import { open, readlink, stat, type FileHandle } from 'node:fs/promises';
import { JrError, messageOf } from '../errors.js';
import { run } from '../proc.js';
import { parentOf } from '../procfs.js';
import { idMap, USERNS_SYSCTL } from './sandbox.js';

/** setns(2)'s number where Node runs (Linux's generic table for arm64 and riscv64). */
const SETNS: Partial<Record<NodeJS.Architecture, number>> = { x64: 308, arm64: 268, riscv64: 268 };

// Joins the user namespace open on fd 3 (setns, CLONE_NEWUSER) and writes the sysctl there, in one
// process: no exec, so it keeps the capabilities setns gave it in that namespace and stays uid 0
// (never a process in the sandbox's id range). The fd, not /proc/PID/ns/user: the pid may belong
// to another process by now, the open namespace cannot change. Perl: perl-base is Essential.
const DENY_USERNS = `
use strict; use warnings;
syscall($ARGV[0], 3, 0x10000000) == 0 or die "setns: $!\\n";
open(my $f, '>', $ARGV[1]) or die "open $ARGV[1]: $!\\n";
print $f "0\\n"; close($f) or die "write $ARGV[1]: $!\\n";
open(my $r, '<', $ARGV[1]) or die "open $ARGV[1]: $!\\n";
my $v = <$r>; defined($v) && $v =~ /^0\\s*$/ or die "$ARGV[1] reads back as " . ($v // '(nothing)') . "\\n";`;

/** The user namespace of a sandbox's first process, held open; see openSandboxUserns. */
export interface SandboxUserns {
  pid: number;
  /** The sandbox's pid namespace (e.g. "pid:[4026532401]"), read before the check. */
  pidNs: string;
  /** Write the uid and gid maps: ids 0..65535 inside are idBase.. on the host. */
  map(idBase: number): Promise<void>;
  /** Set user.max_user_namespaces of the namespace to 0, from inside it (a root helper). */
  denyUserNamespaces(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Open the user namespace, uid_map and gid_map of `pid`, bwrap's first child (bwrap is `parent`),
 * then check that it is: its parent is `parent` (bwrap makes one child, so a process with that
 * parent is the one that had the pid all along, and every file was opened on it) and its user
 * namespace is not ours. Throws when not; never writes anything before the check.
 */
export async function openSandboxUserns(pid: number, parent: number): Promise<SandboxUserns> {
  const held: FileHandle[] = [];
  const openOf = async (name: string, flags: number): Promise<FileHandle> => {
    const fh = await open(`/proc/${pid}/${name}`, flags).catch((e: unknown) => {
      throw new JrError('JR_E_PROCESS', `could not open /proc/${pid}/${name} (the sandbox's first process): ${messageOf(e)}`);
    });
    held.push(fh);
    return fh;
  };
  const close = async (): Promise<void> => { for (const fh of held.splice(0)) await fh.close().catch(() => undefined); };
  try {
    const ns = await openOf('ns/user', constants.O_RDONLY);
    const uidMap = await openOf('uid_map', constants.O_WRONLY);
    const gidMap = await openOf('gid_map', constants.O_WRONLY);
    const pidNs = await readlink(`/proc/${pid}/ns/pid`);
    const ppid = await parentOf(pid);
    if (ppid !== parent) {
      throw new JrError('JR_E_PROCESS', `process ${pid} is not bwrap's child any more (its parent is ${ppid ?? '(gone)'}, not ${parent})`);
    }
    const [theirs, ours] = [await ns.stat(), await stat('/proc/self/ns/user')];
    if (theirs.dev === ours.dev && theirs.ino === ours.ino) {
      throw new JrError('JR_E_PROCESS', `process ${pid} is in our own user namespace, not a new one`);
    }
    const write = async (fh: FileHandle, what: string, text: string): Promise<void> => {
      // One write(2) at offset 0, as the kernel requires of an id map.
      await fh.write(text).catch((e: unknown) => { throw new JrError('JR_E_PROCESS', `could not write the sandbox's ${what}: ${messageOf(e)}`); });
    };
    return {
      pid, pidNs, close,
      async map(idBase) {
        await write(uidMap, 'uid_map', idMap(idBase));
        await write(gidMap, 'gid_map', idMap(idBase));
      },
      async denyUserNamespaces() {
        const nr = SETNS[process.arch];
        if (nr === undefined) throw new JrError('JR_E_CONFIG', `--isolation unshare does not know setns(2)'s number on ${process.arch}`);
        await run('perl', ['-e', DENY_USERNS, '--', String(nr), USERNS_SYSCTL],
          { cleanEnv: true, env: { PATH: '/usr/bin:/bin' }, timeoutMs: 10_000, errorCode: 'JR_E_PROCESS', extraFds: [ns.fd] });
      },
    };
  } catch (e) {
    await close();
    throw e;
  }
}

/** bwrap started with --info-fd and --userns-block-fd, not yet released. */
export interface BlockedSandbox {
  /** bwrap's pid: our child, the leader of its own process group (its still waiting first child is in it too). */
  pid: number;
  /** --info-fd: bwrap writes {"child-pid": N} there once the namespaces exist. */
  info: NodeJS.ReadableStream;
  /** --userns-block-fd: bwrap reads it before it lets its first child go on; EOF releases it too. */
  block: NodeJS.WritableStream;
  /** True once bwrap has exited. */
  exited(): boolean;
  /** Settles once bwrap has exited. */
  exit: Promise<unknown>;
}

/** How the set-up ended: nsInit null when bwrap never reported a child; failure set when it was killed for one. */
export interface SetUpEnd { nsInit: number | null; failure: string | null }

/**
 * Wait for bwrap's first child, run `setUp` on it, and release the block fd only if that succeeded.
 * On a failure, SIGKILL bwrap's process group (bwrap and the still blocked child), wait for bwrap to
 * exit and report why; the block fd stays unwritten (the caller destroys it once all is dead).
 */
export function setUpSandbox(b: BlockedSandbox, setUp: (nsInit: number) => Promise<void>): Promise<SetUpEnd> {
  // The reader may be gone (bwrap killed meanwhile): a write then fails with EPIPE, which is no news.
  (b.block as NodeJS.WritableStream & { on(ev: 'error', fn: () => void): unknown }).on('error', () => undefined);
  return new Promise<SetUpEnd>((resolve) => {
    let text = '';
    let nsInit: number | null = null;
    const fail = async (why: string): Promise<void> => {
      try { if (!b.exited()) process.kill(-b.pid, 'SIGKILL'); } catch { /* gone already */ }
      await b.exit;
      resolve({ nsInit, failure: why });
    };
    b.info.on('data', (c: Buffer) => {
      if (nsInit !== null) return;
      text += c.toString('utf8');
      const m = /"child-pid"\s*:\s*(\d+)/.exec(text);
      if (!m) return;
      nsInit = Number(m[1]);
      void setUp(nsInit).then(() => {
        // Killed meanwhile (a watchdog): nothing left to release.
        if (!b.exited()) b.block.end('go');
        resolve({ nsInit, failure: null });
      }, (e: unknown) => fail(messageOf(e)));
    });
    // No child reported (bwrap failed before making one, or never started): nothing to set up.
    const none = (): void => { if (nsInit === null) resolve({ nsInit: null, failure: null }); };
    b.info.on('end', none);
    b.info.on('error', none);
  });
}
