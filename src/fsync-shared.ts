// Group commit for the spool's durability points. A claim or a publish must know that what it
// wrote is on disk before it goes on (the lease before the input is moved in, a result's files
// before its NAME.json is linked, the names before the claim is dropped). One fsync per file made
// a flood of 10,000 files cost ~50,000 journal commits, four at a time (libuv's thread pool):
// minutes. Instead a caller waits for a barrier: one syncfs(2) of the file system holding the
// spool, started after the caller's changes, which makes every change made before it durable
// (file data, inodes and directory entries alike; stronger than an fsync of each file). Callers
// that arrive while a barrier runs share the next one, so a flood needs a few syncfs calls per
// batch of files in flight, not one fsync per file. The cost: a syncfs also flushes other
// writers' dirty data on that file system (e.g. a running VM's work image), so one barrier can
// take longer on a busy disk; it never gives up durability.
import { spawn as spawnChild, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { run } from './proc.js';

/** Per file system: the barrier newcomers will share (not started yet) and the one running. */
const next = new Map<number, Promise<void>>();
const running = new Map<number, Promise<void>>();
/** Spool directories are few and fixed: their device is looked up once. */
const devOf = new Map<string, Promise<number>>();
const LINGER_MS = 3;
/** Barriers run since start (bench/intake reports them). */
export const barrierStats = { syncs: 0, waits: 0 };

/**
 * A long-lived shell runs `sync -f` for us: node has no syncfs binding, and spawning a process
 * from the service costs it milliseconds of its own (it forks a large process): a flood's few
 * hundred barriers spent more main-thread time spawning than syncing. The shell forks only itself
 * (small) and answers one line per request, in order. There is one per file system, so a slow
 * syncfs of one (a busy results disk) never holds up the barriers of another. A helper is replaced
 * if it dies; it never keeps the service alive (unref'd while no answer is due).
 */
export class SyncHelper {
  /** `spawn` starts the shell (tests give a stand-in to force the order of its events). */
  constructor(private readonly spawn: () => ChildProcessWithoutNullStreams = spawnShell) {}

  private cur: { c: ChildProcessWithoutNullStreams; waiting: Array<{ resolve: () => void; reject: (e: Error) => void }> } | null = null;

  sync(dir: string): Promise<void> {
    const h = this.cur ?? this.start();
    return new Promise<void>((resolve, reject) => {
      // Referenced while an answer is due (or a draining service would exit before its last
      // barrier), unreferenced when idle (or the helper alone would keep the service alive).
      if (h.waiting.length === 0) hold(h.c, true);
      h.waiting.push({ resolve, reject });
      h.c.stdin.write(`${dir}\n`);
    });
  }

  private start(): NonNullable<SyncHelper['cur']> {
    const c = this.spawn();
    // Each helper answers only its own requests: a dead helper's last answers, read after a new one
    // took over, can only resolve what was asked of it (they were really synced).
    const h = { c, waiting: [] as Array<{ resolve: () => void; reject: (e: Error) => void }> };
    this.cur = h;
    hold(c, false);
    let buf = '';
    c.stdout.setEncoding('utf8');
    c.stdout.on('data', (d: string) => {
      buf += d;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        const w = h.waiting.shift();
        if (h.waiting.length === 0) hold(c, false);
        if (line === 'ok') w?.resolve(); else w?.reject(new Error('sync -f failed'));
      }
    });
    const retire = (): void => { if (this.cur === h) this.cur = null; };
    // Gone for new requests at once; the unanswered ones fail only at 'close', once all it wrote has been read.
    c.on('exit', retire);
    c.on('error', retire);
    c.stdin.on('error', retire);
    c.on('close', (code, sig) => {
      retire();
      hold(c, false);
      for (const w of h.waiting.splice(0)) w.reject(new Error(`the sync helper ended (${code ?? sig}) before answering`));
    });
    return h;
  }
}

function spawnShell(): ChildProcessWithoutNullStreams {
  return spawnChild('sh', ['-c', 'while IFS= read -r d; do if sync -f -- "$d" 2>/dev/null; then echo ok; else echo fail; fi; done'],
    { stdio: ['pipe', 'pipe', 'ignore'] as const, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } }) as unknown as ChildProcessWithoutNullStreams;
}

function hold(c: ChildProcessWithoutNullStreams, on: boolean): void {
  for (const x of [c, c.stdin, c.stdout] as unknown as Array<{ ref?: () => void; unref?: () => void }>) {
    if (on) x.ref?.(); else x.unref?.();
  }
}

const helpers = new Map<number, SyncHelper>();

/** syncfs(2) of the file system `dev` holding `dir`: through its helper, or one `sync -f` of our own. */
async function syncfs(dir: string, dev: number): Promise<void> {
  barrierStats.syncs++;
  // A name with a newline cannot be a line to the helper; a failed helper run is tried once directly.
  if (!dir.includes('\n')) {
    let h = helpers.get(dev);
    if (!h) { h = new SyncHelper(); helpers.set(dev, h); }
    try { await h.sync(dir); return; } catch { /* below */ }
  }
  await run('sync', ['-f', '--', dir]);
}

/**
 * Resolve once everything written to the file system holding `dir` before this call is durable:
 * a syncfs started after the call has completed. Concurrent callers share that syncfs.
 */
export async function syncShared(dir: string): Promise<void> {
  barrierStats.waits++;
  let d = devOf.get(dir);
  if (!d) { d = stat(dir).then((st) => st.dev); devOf.set(dir, d); d.catch(() => devOf.delete(dir)); }
  const dev = await d;
  const waiting = next.get(dev);
  if (waiting) return waiting;
  const start = (): Promise<void> => {
    next.delete(dev);
    const r: Promise<void> = syncfs(dir, dev).finally(() => { if (running.get(dev) === r) running.delete(dev); });
    running.set(dev, r);
    return r;
  };
  // A short linger lets the others in flight (a flood's claims run in step) reach the same barrier.
  const lingered = (): Promise<void> => new Promise<void>((r) => setTimeout(r, LINGER_MS)).then(start);
  const cur = running.get(dev);
  // The running syncfs may have started before our change: wait for it, then start one that covers us.
  const mine = cur ? cur.then(lingered, lingered) : lingered();
  next.set(dev, mine);
  return mine;
}
