// Bulk rejection at intake. A queue entry whose size alone rules it out (empty, too small to hold a
// filesystem, over --max-image-size: the caller judges) is rejected in chunks, without a claim
// directory or a lease of its own. A flood of such entries (issue 10's denial of service: 10,000
// empty *.img) otherwise pays per file for a claim, a lease, a screen and a publish: about forty
// file-system calls through libuv's thread pool and four barriers, ~1 ms of the service's main
// thread each. Here a chunk shares one journal and three barriers, and each entry costs about ten
// synchronous calls.
//
// Per chunk (queue/.running/.held/ is the service's own: .running is checked at start-up):
//   1. .held/<chunk>.journal lists every entry (id, name as found, name as submitted, mtime) and is
//      made durable before any entry moves: after a crash, recovery knows what each held file was.
//   2. Each entry is renamed to .held/<id>.img[.xz] (the claim: atomic, nothing opened or followed)
//      and judged again by lstat there, where the submitter can no longer swap it.
//   3. Under a free NAME in failed/ (NAME, NAME-1... as publish.ts; never beside an existing
//      NAME.json): the held file linked as NAME.img (the evidence), NAME.log written (or linked to
//      the chunk's log of the same text), NAME.json's content under a temp name; a barrier;
//      NAME.json linked (its presence means complete); a barrier; then the temps, the held names
//      and the journal go.
//   Handed back: a plain file whose size no longer rules it out (it grew after the look) goes back
//   into queue/ under its name by link (never replacing a file), for intake to take when it has
//   room; anything else this path cannot publish (swapped for a link or a directory, EPERM or EXDEV
//   from link, a name search too long) becomes an ordinary claim under the journal's id.
// The calls are synchronous: a chunk's ~10 calls per entry cost less than the promise and thread
// pool round trip of each async one would (measured: bench/intake), and the event loop is held for
// at most one chunk's step (~20-40 ms for 128 entries), given back at every barrier.
import { linkSync, lstatSync, mkdirSync, renameSync, rmdirSync, unlinkSync, writeFileSync, type Stats } from 'node:fs';
import { lstat, readdir, readFile, rm, rmdir, unlink } from 'node:fs/promises';
import path from 'node:path';
import { entryExists, readJson } from '../fsutil.js';
import { syncShared } from '../fsync-shared.js';
import { claim, inputName, isJobId, newJobId, newJobIds, RUNNING, type Claim } from './claim.js';
import { parseSubmission, type Submission } from './names.js';
import { asLinkingPublisher, nameAt } from './publish.js';
import { statusRecord, type JobStatus } from './record.js';

/** queue/.running/.held: entries taken by a bulk rejection that is not finished yet. */
export const HELD = '.held';

export interface JunkEntry {
  /** Its name in queue/. */
  file: string;
  /** Last modification seen at intake (the record's submittedAt). */
  mtime: Date;
  /** The name as submitted when it differs from `file` (undecodable bytes shown as \xNN). */
  submitted?: string;
}

export interface BulkRejector {
  queue: string;
  failed: string;
  version: string;
  /** Why the held entry (lstat of a plain single-link file) cannot be a job; null: it may be one after all. */
  judge: (st: Stats, sub: Submission) => string | null;
}

export type BulkOutcome =
  | { kind: 'rejected'; file: string; json: string; status: JobStatus }
  /** Vanished before it could be taken (claimed or removed by someone else). */
  | { kind: 'gone'; file: string }
  /** It grew after the look: back in queue/ under its name, for intake to take in turn. */
  | { kind: 'requeued'; file: string }
  /** Not for this path: an ordinary claim, for the caller to screen (and reject, or run). */
  | { kind: 'claimed'; file: string; claim: Claim }
  /** Left in queue/ (not taken) or in .held/ (recovered at the next start); nothing is lost. */
  | { kind: 'failed'; file: string; error: unknown };

interface Held {
  e: JunkEntry;
  sub: Submission;
  id: string;
  ext: string;
  path: string;
  st?: Stats;
  reason?: string;
  /** Handed back because it may be a job now (requeue it), rather than because this path cannot publish it. */
  grew?: boolean;
  placed?: { name: string; evidence: string; log: string; tmp: string; status: JobStatus };
  /** NAME.json is linked: published, whatever happens after. */
  linked?: boolean;
}

interface JournalLine { id: string; file: string; submitted: string | null; mtime: string }

const code = (e: unknown): string | undefined => (e as NodeJS.ErrnoException).code;
const unlinkQuiet = (f: string): void => { try { unlinkSync(f); } catch { /* gone already */ } };
const lstatQuiet = (f: string): Stats | undefined => lstatSync(f, { throwIfNoEntry: false });
/** Our log text: recovery removes a NAME.log only when it reads like one of ours. */
const LOG_PREFIX = '\n[jobrunner] rejected: ';

export function heldDir(queue: string): string {
  return path.join(queue, RUNNING, HELD);
}

// Chunks under way in this process, per .held directory: the last one out removes the directory
// (made again by the next), so a quiet spool has nothing but claims in .running. The calls that
// make and remove it are synchronous, so no chunk can come between them.
const active = new Map<string, number>();
function enter(dir: string): void {
  active.set(dir, (active.get(dir) ?? 0) + 1);
  try { mkdirSync(dir, { mode: 0o755 }); } catch (e) { if (code(e) !== 'EEXIST') { leave(dir); throw e; } }
}
function leave(dir: string): void {
  const n = (active.get(dir) ?? 1) - 1;
  if (n > 0) { active.set(dir, n); return; }
  active.delete(dir);
  try { rmdirSync(dir); } catch { /* not empty: a journal kept for recovery, or nothing to remove */ }
}

// Where the name search starts, per results directory and NAME: past the last name taken, so a
// flood of one NAME (a@1.img, a@2.img, ...: the base part is not in the name) does not probe every
// taken name once per entry (that was quadratic, and synchronous: seconds of blocked event loop).
// From there the search steps 1, 2, 4, 8... past taken names: any free NAME-k will do, so thousands
// of earlier results of one NAME cost a dozen probes. A name freed meanwhile is simply not reused.
// Bounded: the oldest NAMEs are forgotten first.
const nameFrom = new Map<string, number>();
const NAME_MEMO = 4096;
// Names tried for one entry before it is handed to the ordinary (async) path.
const MAX_PROBES = 48;

function memo(dir: string, name: string, next?: number): number {
  const key = `${dir}\0${name}`;
  if (next === undefined) return nameFrom.get(key) ?? 0;
  nameFrom.delete(key);
  nameFrom.set(key, next);
  if (nameFrom.size > NAME_MEMO) nameFrom.delete(nameFrom.keys().next().value!);
  return next;
}

export interface BulkResult {
  /** One per entry. */
  outcomes: BulkOutcome[];
  /** A barrier or lock failed part-way (the entries not published were handed back); null when none did. */
  error: unknown;
}

/**
 * Reject `entries` (names in queue/ the caller judged by size) as one chunk. Throws only before any
 * entry moved (the entries stay queued); after that every entry has its outcome, and what could not
 * be finished stays held for the next start's recovery.
 */
export async function rejectChunk(o: BulkRejector, entries: JunkEntry[]): Promise<BulkResult> {
  const dir = heldDir(o.queue);
  enter(dir);
  try {
    return await rejectIn(dir, o, entries);
  } finally {
    leave(dir);
  }
}

async function rejectIn(dir: string, o: BulkRejector, entries: JunkEntry[]): Promise<BulkResult> {
  const ids = newJobIds(entries.length + 1);
  const chunk = ids.pop()!;
  const out: BulkOutcome[] = [];
  const items: Held[] = [];
  entries.forEach((e, i) => {
    const sub = parseSubmission(e.file);
    if (!sub) { out.push({ kind: 'failed', file: e.file, error: new Error('not a submission name') }); return; }
    const ext = sub.compressed ? 'img.xz' : 'img';
    items.push({ e, sub, id: ids[i]!, ext, path: path.join(dir, `${ids[i]}.${ext}`) });
  });
  if (items.length === 0) return { outcomes: out, error: null };

  // 1. The journal, durable before anything moves.
  const journal = path.join(dir, `${chunk}.journal`);
  const lines = items.map((h): JournalLine => ({ id: h.id, file: h.e.file, submitted: h.e.submitted ?? null, mtime: h.e.mtime.toISOString() }));
  try {
    writeFileSync(journal, lines.map((l) => JSON.stringify(l)).join('\n') + '\n', { flag: 'wx', mode: 0o644 });
    await syncShared(o.queue);
  } catch (e) {
    if (code(e) !== 'EEXIST') unlinkQuiet(journal);
    throw e;
  }

  // 2. Take each entry, judge it where it cannot be swapped.
  const back: Held[] = [];
  const publishing: Held[] = [];
  for (const h of items) {
    try {
      renameSync(path.join(o.queue, h.e.file), h.path);
    } catch (e) {
      out.push(code(e) === 'ENOENT' ? { kind: 'gone', file: h.e.file } : { kind: 'failed', file: h.e.file, error: e });
      continue;
    }
    const st = lstatQuiet(h.path);
    const plain = st?.isFile() === true && st.nlink === 1;
    const reason = plain ? o.judge(st, h.sub) : null;
    if (!st || reason === null) { h.grew = plain; back.push(h); continue; }
    h.st = st;
    h.reason = reason;
    publishing.push(h);
  }

  // 3. Publish. A name lost to a concurrent publisher between our look and NAME.json's link (link
  // never replaces) is given up and the next one tried, a few times; then the ordinary path.
  let keepJournal = false;
  let error: unknown = null;
  let todo = publishing;
  try {
    for (let round = 0; round < 3 && todo.length > 0; round++) {
      const placed: Held[] = [];
      const logs: Logs = new Map();
      await asLinkingPublisher(async () => {
        for (const h of todo) {
          try { place(o, h, logs); placed.push(h); } catch { back.push(h); }
        }
      });
      todo = [];
      await syncShared(o.failed);
      const linked: Held[] = [];
      await asLinkingPublisher(async () => {
        for (const h of placed) {
          const p = h.placed!;
          try {
            linkSync(p.tmp, path.join(o.failed, `${p.name}.json`));
            h.linked = true;
            linked.push(h);
          } catch (e) {
            unplace(h);
            (code(e) === 'EEXIST' ? todo : back).push(h);
          }
        }
      });
      // The names are durable before the held entries (the only other copy) go.
      if (linked.length > 0) await syncShared(o.failed);
      for (const h of linked) {
        unlinkQuiet(h.placed!.tmp);
        unlinkQuiet(h.path);
        out.push(rejected(o, h));
      }
    }
    back.push(...todo);
  } catch (e) {
    // A barrier (or a lock) failed part-way. What is linked is published: it is reported, and its
    // held entry stays for recovery to drop (the names may not be durable yet). The rest goes back.
    for (const h of publishing) {
      if (out.some((r) => r.file === h.e.file) || back.includes(h)) continue;
      if (h.linked) { out.push(rejected(o, h)); keepJournal = true; continue; }
      if (h.placed) unplace(h);
      back.push(h);
    }
    error = e;
  }

  // Handed back.
  for (const h of back) {
    try {
      out.push(await handBack(o, h));
    } catch (e) {
      keepJournal = true; // the held entry stays: the next start's recovery hands it back
      out.push({ kind: 'failed', file: h.e.file, error: e });
    }
  }
  if (!keepJournal) unlinkQuiet(journal);
  return { outcomes: out, error };
}

function rejected(o: BulkRejector, h: Held): BulkOutcome {
  const p = h.placed!;
  return { kind: 'rejected', file: h.e.file, json: path.join(o.failed, `${p.name}.json`), status: p.status };
}

/** Undo place(): the evidence, log and temp go (nothing else has these names: they were made exclusively). */
function unplace(h: Held): void {
  const p = h.placed;
  if (!p) return;
  for (const f of [p.evidence, p.log, p.tmp]) unlinkQuiet(f);
  h.placed = undefined;
}

/**
 * An entry this path does not publish. One that grew back into a possible job goes back into
 * queue/ under its own name by link (never replacing a file someone put there meanwhile), so it
 * waits for room like any queued file; anything else (or when that link fails) becomes an ordinary
 * claim under the journal's id.
 */
async function handBack(o: BulkRejector, h: Held): Promise<BulkOutcome> {
  if (h.grew && h.e.submitted === undefined) {
    try {
      linkSync(h.path, path.join(o.queue, h.e.file));
      unlinkSync(h.path);
      return { kind: 'requeued', file: h.e.file };
    } catch { /* EEXIST (a new file of that name), EPERM (not ours to link): a claim instead */ }
  }
  const c = await claim(o.queue, h.sub, h.e.mtime, h.e.submitted, h.id, h.path);
  return c ? { kind: 'claimed', file: h.e.file, claim: c } : { kind: 'gone', file: h.e.file };
}

/**
 * A chunk's published logs by content: entries rejected for the same reason (a flood of empty
 * files) get their NAME.log as another link to one written file, not a file each. Results are
 * never modified once published, so the names may share an inode like mail delivered to several
 * boxes; removing one name leaves the others.
 */
type Logs = Map<string, string>;

/** NAME.log for `h`, by O_EXCL: a link to an earlier log of the same text, or a file of its own. */
function writeLog(log: string, text: string, logs: Logs): void {
  const twin = logs.get(text);
  if (twin !== undefined) {
    try { linkSync(twin, log); return; } catch (e) {
      if (code(e) === 'EEXIST') throw e;
      logs.delete(text); // the twin's name was taken back (its record lost a race): write our own
    }
  }
  writeFileSync(log, text, { flag: 'wx', mode: 0o644 });
  logs.set(text, log);
}

/**
 * Take the first free NAME for held entry `h`: the evidence linked, the log written, the record's
 * content under a temp name. Throws when this path cannot publish it (the caller hands it back).
 * A NAME with a record is skipped by a look; a NAME.img or NAME.log in use shows as EEXIST.
 */
function place(o: BulkRejector, h: Held, logs: Logs): void {
  const st = h.st!;
  const start = memo(o.failed, h.sub.name);
  for (let n = 0, i = start, step = 1; ; n++, i = start + step, step *= 2) {
    if (n >= MAX_PROBES) throw new Error(`no free name for ${h.sub.name} within ${MAX_PROBES} tries`);
    const name = nameAt(h.sub.name, i);
    const evidence = path.join(o.failed, `${name}.${h.ext}`);
    const log = path.join(o.failed, `${name}.log`);
    // Never beside another result's record (some results are a NAME.json alone).
    if (lstatQuiet(path.join(o.failed, `${name}.json`))) continue;
    try {
      linkSync(h.path, evidence);
    } catch (e) {
      if (code(e) === 'EEXIST') continue;
      throw e; // EPERM (protected_hardlinks, the service not root) and the like: the ordinary path
    }
    try {
      writeLog(log, `${LOG_PREFIX}${h.reason}\n`, logs);
    } catch (e) {
      unlinkQuiet(evidence);
      if (code(e) === 'EEXIST') continue;
      throw e;
    }
    memo(o.failed, h.sub.name, i + 1);
    const status = statusRecord({ name: h.sub.name, id: h.id, submitted: h.e.submitted ?? h.e.file, attempt: 1, submittedAt: h.e.mtime.toISOString() }, name, {
      status: 'rejected', exitCode: null, reason: h.reason!, version: o.version, startedAt: null,
      input: { bytes: st.size, sha256: null }, deps: null,
    }, new Date().toISOString());
    const tmp = path.join(o.failed, `.${name}.json.${h.id}.tmp`);
    try {
      writeFileSync(tmp, JSON.stringify(status, null, 2) + '\n', { flag: 'wx', mode: 0o644 });
    } catch (e) {
      for (const f of [evidence, log]) unlinkQuiet(f);
      if (code(e) !== 'EEXIST') unlinkQuiet(tmp);
      throw e;
    }
    h.placed = { name, evidence, log, tmp, status };
    return;
  }
}

export interface HeldRecovery {
  /** Held entries handed back as ordinary claims (the caller screens and runs them). */
  claims: Claim[];
  /** Held entries whose rejection had been published in full: only the held name was left. */
  published: number;
  /** Held entries that had already been put back into queue/ (only the held name was left). */
  requeued: number;
}

/**
 * At start-up (holding the spool lock): what bulk rejections a crash interrupted. A held entry with
 * a second name is found where that name is: back in queue/ under its journal name (a hand-back
 * that finished), or in failed/ as evidence, published in full when NAME.json beside it names its
 * id (either way only the held name goes), or not (the evidence and its log go). Every other held
 * entry becomes an ordinary claim under its journal's id and name, screened the ordinary way.
 * Journals go once their entries are handled.
 */
export async function recoverHeld(o: { queue: string; failed: string }): Promise<HeldRecovery> {
  const dir = heldDir(o.queue);
  const res: HeldRecovery = { claims: [], published: 0, requeued: 0 };
  const names = await readdir(dir).catch((e: NodeJS.ErrnoException) => { if (e.code === 'ENOENT') return null; throw e; });
  if (!names) return res;
  const known = new Map<string, JournalLine>();
  const journals = names.filter((f) => f.endsWith('.journal'));
  for (const j of journals) {
    for (const line of (await readFile(path.join(dir, j), 'utf8').catch(() => '')).split('\n')) {
      try {
        const l = JSON.parse(line) as JournalLine;
        if (isJobId(l.id) && typeof l.file === 'string' && parseSubmission(l.file)) known.set(l.id, l);
      } catch { /* a torn last line: its entry never moved (the journal was durable first) */ }
    }
  }
  let links: Map<number, string[]> | null = null; // failed/'s evidence names by inode, read once if needed
  for (const f of names) {
    const m = /^([0-9a-z-]+)\.(img|img\.xz)$/.exec(f);
    if (!m || !isJobId(m[1]!)) continue;
    const ext = m[2]!;
    const held = path.join(dir, f);
    const st = await lstat(held).catch(() => null);
    if (!st) continue;
    const line = known.get(m[1]!);
    // Without its journal line (never expected) it is named after its id. The extension is the held
    // file's either way (a journal line names the same kind: both come from one name).
    const fromLine = line ? parseSubmission(line.file) : null;
    const sub = fromLine && fromLine.compressed === (ext === 'img.xz') ? fromLine : parseSubmission(f)!;
    let id = m[1]!;
    if (st.nlink > 1) {
      const inQueue = line ? await lstat(path.join(o.queue, line.file)).catch(() => null) : null;
      if (inQueue && inQueue.ino === st.ino && inQueue.dev === st.dev) { await unlink(held); res.requeued++; continue; }
      links ??= await evidenceByInode(o.failed, st.dev);
      if (await settleEvidence(o.failed, links.get(st.ino) ?? [], id)) { await unlink(held); res.published++; continue; }
    }
    // A claim directory of this id without an input (a hand-back cut short between its lease and
    // its move) is dropped first; one with an input (never expected) keeps it, and this entry takes a fresh id.
    const claimDir = path.join(o.queue, RUNNING, id);
    if (await entryExists(claimDir)) {
      const hasInput = (await Promise.all([inputName(false), inputName(true)].map((n) => entryExists(path.join(claimDir, n))))).some(Boolean);
      if (hasInput) id = newJobId();
      else await rm(claimDir, { recursive: true, force: true });
    }
    const mtime = line ? new Date(line.mtime) : st.mtime;
    const c = await claim(o.queue, sub, mtime, line?.submitted ?? undefined, id, held);
    if (c) res.claims.push(c);
  }
  for (const j of journals) await unlink(path.join(dir, j)).catch(() => undefined);
  await rmdir(dir).catch(() => undefined); // empty now, unless something odd was left (kept, for a person to look at)
  return res;
}

/** Names in failed/ of evidence files (*.img, *.img.xz) on device `dev`, by inode (one pass, only after a crash). */
async function evidenceByInode(failed: string, dev: number): Promise<Map<number, string[]>> {
  const out = new Map<number, string[]>();
  for (const f of await readdir(failed).catch(() => [] as string[])) {
    if (!/\.img(\.xz)?$/.test(f) || f.startsWith('.')) continue;
    const st = await lstat(path.join(failed, f)).catch(() => null);
    if (!st?.isFile() || st.dev !== dev || st.nlink < 2) continue;
    out.set(st.ino, [...(out.get(st.ino) ?? []), f]);
  }
  return out;
}

/**
 * The held entry `id`'s evidence names in failed/: true when one has its NAME.json naming `id`
 * (published in full). Otherwise every evidence name it left goes, with the log written beside it
 * when that reads as ours and no record claims it, so the ordinary rejection that follows leaves
 * no second copy.
 */
async function settleEvidence(failed: string, evidence: string[], id: string): Promise<boolean> {
  for (const f of evidence) {
    const base = f.replace(/\.img(\.xz)?$/, '');
    const record = await readJson(path.join(failed, `${base}.json`)) as { id?: unknown } | null;
    if (record?.id === id) return true;
  }
  for (const f of evidence) {
    const base = f.replace(/\.img(\.xz)?$/, '');
    await unlink(path.join(failed, f)).catch(() => undefined);
    const hasRecord = await entryExists(path.join(failed, `${base}.json`));
    const log = path.join(failed, `${base}.log`);
    if (!hasRecord && (await readFile(log, 'utf8').catch(() => '')).startsWith(LOG_PREFIX)) await unlink(log).catch(() => undefined);
  }
  return false;
}
