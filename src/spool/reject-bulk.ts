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
//      and judged again by lstat there, where the submitter can no longer swap it. One that is not
//      a plain single-link file, or whose size no longer rules it out, is handed back as an ordinary
//      claim (screen, prescreen, run), as is one this path cannot publish (e.g. EPERM from link).
//   3. Under a free NAME in failed/ (the same NAME, NAME-1... choice as publish.ts): the held file
//      linked as NAME.img (the evidence), NAME.log written, NAME.json's content under a temp name;
//      a barrier; NAME.json linked (its presence means complete); a barrier; then the temps, the
//      held names and the journal go.
// The calls are synchronous: a chunk's ~10 calls per entry cost less than the promise and thread
// pool round trip of each async one would (measured: bench/intake), and the event loop is held for
// at most one chunk's step (~20-30 ms for 128 entries), given back at every barrier.
import { linkSync, lstatSync, mkdirSync, readFileSync, renameSync, rmdirSync, unlinkSync, writeFileSync, type Stats } from 'node:fs';
import { lstat, readdir, readFile, rmdir, unlink } from 'node:fs/promises';
import path from 'node:path';
import { syncShared } from '../fsync-shared.js';
import { claim, isJobId, newJobIds, RUNNING, type Claim } from './claim.js';
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
  /** Not for this path after all: an ordinary claim, for the caller to screen and run. */
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
  /** Where the name search goes on from (after a lost race for a name). */
  from: number;
  placed?: { name: string; evidence: string; log: string; tmp: string; status: JobStatus };
}

interface JournalLine { id: string; file: string; submitted: string | null; mtime: string }

const code = (e: unknown): string | undefined => (e as NodeJS.ErrnoException).code;
const unlinkQuiet = (f: string): void => { try { unlinkSync(f); } catch { /* gone already */ } };

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

/** Reject `entries` (names in queue/ the caller judged by size) as one chunk; one outcome per entry. */
export async function rejectChunk(o: BulkRejector, entries: JunkEntry[]): Promise<BulkOutcome[]> {
  const dir = heldDir(o.queue);
  enter(dir);
  try {
    return await rejectIn(dir, o, entries);
  } finally {
    leave(dir);
  }
}

async function rejectIn(dir: string, o: BulkRejector, entries: JunkEntry[]): Promise<BulkOutcome[]> {
  const ids = newJobIds(entries.length + 1);
  const chunk = ids.pop()!;
  const out: BulkOutcome[] = [];
  const items: Held[] = [];
  entries.forEach((e, i) => {
    const sub = parseSubmission(e.file);
    if (!sub) { out.push({ kind: 'failed', file: e.file, error: new Error('not a submission name') }); return; }
    const ext = sub.compressed ? 'img.xz' : 'img';
    items.push({ e, sub, id: ids[i]!, ext, path: path.join(dir, `${ids[i]}.${ext}`), from: 0 });
  });
  if (items.length === 0) return out;

  // 1. The journal, durable before anything moves.
  const journal = path.join(dir, `${chunk}.journal`);
  const lines = items.map((h): JournalLine => ({ id: h.id, file: h.e.file, submitted: h.e.submitted ?? null, mtime: h.e.mtime.toISOString() }));
  try {
    writeFileSync(journal, lines.map((l) => JSON.stringify(l)).join('\n') + '\n', { flag: 'wx', mode: 0o644 });
  } catch (e) {
    if (code(e) !== 'EEXIST') unlinkQuiet(journal);
    throw e;
  }
  await syncShared(o.queue);

  // 2. Take each entry, judge it where it cannot be swapped.
  const back: Held[] = [];
  let todo: Held[] = [];
  for (const h of items) {
    try {
      renameSync(path.join(o.queue, h.e.file), h.path);
    } catch (e) {
      out.push(code(e) === 'ENOENT' ? { kind: 'gone', file: h.e.file } : { kind: 'failed', file: h.e.file, error: e });
      continue;
    }
    const st = lstatSync(h.path, { throwIfNoEntry: false });
    const reason = st?.isFile() && st.nlink === 1 ? o.judge(st, h.sub) : null;
    if (!st || reason === null) { back.push(h); continue; }
    h.st = st;
    h.reason = reason;
    todo.push(h);
  }

  // 3. Publish. A name lost to a concurrent publisher between our check and NAME.json's link
  // (link never replaces) is given up and the next one tried, a few times; then the ordinary path.
  for (let round = 0; round < 3 && todo.length > 0; round++) {
    const placed: Held[] = [];
    const logs: Logs = new Map();
    await asLinkingPublisher(async () => {
      for (const h of todo) {
        try { place(o, h, logs); placed.push(h); } catch { back.push(h); }
      }
    });
    await syncShared(o.failed);
    const linked: Held[] = [];
    const again: Held[] = [];
    await asLinkingPublisher(async () => {
      for (const h of placed) {
        const p = h.placed!;
        try {
          linkSync(p.tmp, path.join(o.failed, `${p.name}.json`));
          linked.push(h);
        } catch (e) {
          for (const f of [p.evidence, p.log, p.tmp]) unlinkQuiet(f);
          h.placed = undefined;
          if (code(e) === 'EEXIST') { h.from += 1; again.push(h); } else back.push(h);
        }
      }
    });
    // The names are durable before the held entries (the only other copy) go.
    if (linked.length > 0) await syncShared(o.failed);
    for (const h of linked) {
      const p = h.placed!;
      unlinkQuiet(p.tmp);
      unlinkQuiet(h.path);
      out.push({ kind: 'rejected', file: h.e.file, json: path.join(o.failed, `${p.name}.json`), status: p.status });
    }
    todo = again;
  }
  back.push(...todo);

  // Handed back: an ordinary claim under the id the journal gave it.
  let keepJournal = false;
  for (const h of back) {
    try {
      const c = await claim(o.queue, h.sub, h.e.mtime, h.e.submitted, h.id, h.path);
      out.push(c ? { kind: 'claimed', file: h.e.file, claim: c } : { kind: 'gone', file: h.e.file });
    } catch (e) {
      keepJournal = true; // the held entry stays: the next start's recovery hands it back
      out.push({ kind: 'failed', file: h.e.file, error: e });
    }
  }
  if (!keepJournal) unlinkQuiet(journal);
  return out;
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
 * A name in use anywhere (NAME.img, NAME.log) shows as EEXIST, and the next is tried; NAME.json is
 * checked by its own link.
 */
function place(o: BulkRejector, h: Held, logs: Logs): void {
  const st = h.st!;
  for (let i = h.from; ; i++) {
    const name = nameAt(h.sub.name, i);
    const evidence = path.join(o.failed, `${name}.${h.ext}`);
    const log = path.join(o.failed, `${name}.log`);
    try {
      linkSync(h.path, evidence);
    } catch (e) {
      if (code(e) === 'EEXIST') continue;
      throw e; // EPERM (protected_hardlinks, the service not root) and the like: the ordinary path
    }
    try {
      writeLog(log, `\n[jobrunner] rejected: ${h.reason}\n`, logs);
    } catch (e) {
      unlinkQuiet(evidence);
      if (code(e) === 'EEXIST') continue;
      throw e;
    }
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
    h.from = i;
    h.placed = { name, evidence, log, tmp, status };
    return;
  }
}

export interface HeldRecovery {
  /** Held entries handed back as ordinary claims (the caller screens and runs them). */
  claims: Claim[];
  /** Held entries whose rejection had been published in full: only the held name was left. */
  published: number;
}

/**
 * At start-up (holding the spool lock): what bulk rejections a crash interrupted. A held entry whose
 * NAME.json (with its id) exists was published: its held name goes. Otherwise any evidence link it
 * left is removed and it becomes an ordinary claim under its journal's id and name, so it is
 * screened and rejected again the ordinary way. Journals go once their entries are handled.
 */
export async function recoverHeld(o: { queue: string; failed: string }): Promise<HeldRecovery> {
  const dir = heldDir(o.queue);
  const res: HeldRecovery = { claims: [], published: 0 };
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
  for (const f of names) {
    const m = /^([0-9a-z-]+)\.(img|img\.xz)$/.exec(f);
    if (!m || !isJobId(m[1]!)) continue;
    const id = m[1]!;
    const held = path.join(dir, f);
    const line = known.get(id);
    // Without its journal line (never expected), it is named after its id. Either way the
    // extension is the held file's (a journal line names the same kind: both come from one name).
    const ext = m[2]!;
    const fromLine = line ? parseSubmission(line.file) : null;
    const sub = fromLine && fromLine.compressed === (ext === 'img.xz') ? fromLine : parseSubmission(f)!;
    const st = await lstat(held).catch(() => null);
    if (!st) continue;
    if (st.nlink > 1 && await publishedBefore(o.failed, sub.name, ext, id, st)) {
      await unlink(held);
      res.published++;
      continue;
    }
    const mtime = line ? new Date(line.mtime) : st.mtime;
    const c = await claim(o.queue, sub, mtime, line?.submitted ?? undefined, id, held);
    if (c) res.claims.push(c);
  }
  for (const j of journals) await unlink(path.join(dir, j)).catch(() => undefined);
  await rmdir(dir).catch(() => undefined); // empty now, unless something odd was left (kept, for a person to look at)
  return res;
}

/**
 * Did a bulk rejection of held entry `id` publish in full? Its NAME.json (NAME, NAME-1, ... up to the
 * first name not in use) names the id. An evidence link without its record (the crash came between
 * the two) is removed, so the ordinary rejection that follows does not leave a second copy.
 */
async function publishedBefore(failed: string, name: string, ext: string, id: string, held: Stats): Promise<boolean> {
  for (let i = 0; ; i++) {
    const n = nameAt(name, i);
    const evidence = path.join(failed, `${n}.${ext}`);
    const [ev, js, lg] = [lstatSyncQuiet(evidence), lstatSyncQuiet(path.join(failed, `${n}.json`)), lstatSyncQuiet(path.join(failed, `${n}.log`))];
    if (!ev && !js && !lg) return false;
    if (js) {
      try {
        if ((JSON.parse(readFileSync(path.join(failed, `${n}.json`), 'utf8')) as { id?: unknown }).id === id) return true;
      } catch { /* not ours, or unreadable: go on */ }
    } else if (ev && ev.ino === held.ino && ev.dev === held.dev) {
      // Ours, and so is the log beside it (written right after the link, under a name no other
      // publisher could take while the evidence held it).
      await unlink(evidence);
      if (lg) await unlink(path.join(failed, `${n}.log`)).catch(() => undefined);
      return false;
    }
  }
}

function lstatSyncQuiet(f: string): Stats | undefined {
  return lstatSync(f, { throwIfNoEntry: false });
}
