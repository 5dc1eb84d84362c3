// How bwrap's wait on --userns-block-fd ends. bwrap reports its first child's pid on --info-fd;
// we (root) write the 65536-id map and set the namespace's user.max_user_namespaces to 0, then
// release the block fd. If any step fails, bwrap's process group is SIGKILLed and the block fd is
// never released: bwrap must not go on with a half-set-up namespace (its --assert-userns-disabled
// checks only that a nested unshare() fails, which an unrelated failure passes too).
import { messageOf } from '../errors.js';

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
