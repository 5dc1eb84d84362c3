// Bulk rejection (src/spool/reject-bulk.ts) on real files: what a chunk publishes (the same record,
// evidence and log as the ordinary path), entries that change or are swapped between the look and
// the take (handed back as ordinary claims), names in use, a result directory on another file
// system (link cannot work: handed back), and every point a crash can leave a chunk at, recovered.
import { execFileSync } from 'node:child_process';
import { link, lstat, mkdir, readdir, readFile, rename, symlink, truncate, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { sizeProblem } from '../../src/job/validate.js';
import { prescreenClaim } from '../../src/job/prescreen.js';
import { claim, type Claim } from '../../src/spool/claim.js';
import { parseSubmission } from '../../src/spool/names.js';
import { heldDir, recoverHeld, rejectChunk, type BulkOutcome, type BulkRejector } from '../../src/spool/reject-bulk.js';
import { loadSettings } from '../../src/config.js';
import { scratch } from '../helpers.js';

const MAX = 2 ** 30;
let root: string;
let queue: string;
let failed: string;
let o: BulkRejector;

beforeEach(async () => {
  root = await scratch('bulk');
  queue = path.join(root, 'queue');
  failed = path.join(root, 'failed');
  await mkdir(path.join(queue, '.running'), { recursive: true });
  await mkdir(failed);
  o = { queue, failed, version: 'test', judge: (st, sub) => sizeProblem(st.size, sub.compressed, MAX) };
});

const entry = (file: string): { file: string; mtime: Date } => ({ file, mtime: new Date('2026-01-02T03:04:05.000Z') });
const kinds = (out: BulkOutcome[]): Record<string, string> => Object.fromEntries(out.map((r) => [r.file, r.kind]));
const chunk = async (files: string[]): Promise<BulkOutcome[]> => { const r = await rejectChunk(o, files.map(entry)); expect(r.error).toBeNull(); return r.outcomes; };
const json = async (f: string): Promise<Record<string, unknown>> => JSON.parse(await readFile(path.join(failed, f), 'utf8')) as Record<string, unknown>;

describe('rejectChunk', () => {
  it('publishes each entry as the ordinary path would: record, evidence (the same inode), log; nothing left held', async () => {
    await writeFile(path.join(queue, 'empty.img'), '');
    await writeFile(path.join(queue, 'small.img'), Buffer.alloc(4096, 1));
    await writeFile(path.join(queue, 'big.img'), '');
    await truncate(path.join(queue, 'big.img'), MAX + 1);
    await writeFile(path.join(queue, 'nothing.img.xz'), '');
    const ino = (await lstat(path.join(queue, 'small.img'))).ino;
    const out = await chunk(['empty.img', 'small.img', 'big.img', 'nothing.img.xz']);
    expect(kinds(out)).toEqual({ 'empty.img': 'rejected', 'small.img': 'rejected', 'big.img': 'rejected', 'nothing.img.xz': 'rejected' });
    expect((await readdir(failed)).sort()).toEqual(['big.img', 'big.json', 'big.log', 'empty.img', 'empty.json', 'empty.log', 'nothing.img.xz', 'nothing.json', 'nothing.log',
      'small.img', 'small.json', 'small.log']);
    expect((await lstat(path.join(failed, 'small.img'))).ino).toBe(ino);
    expect((await lstat(path.join(failed, 'small.img'))).nlink).toBe(1);
    expect(await readdir(queue)).toEqual(['.running']);
    expect(await readdir(path.join(queue, '.running')), 'the held directory goes once no chunk uses it').toEqual([]);
    const small = await json('small.json');
    expect(small).toMatchObject({ name: 'small', status: 'rejected', exitCode: null, submitted: 'small.img', publishedAs: 'small', attempt: 1,
      submittedAt: '2026-01-02T03:04:05.000Z', startedAt: null, input: { bytes: 4096, sha256: null }, output: null, version: 'test' });
    expect(small.reason).toBe('not a usable job image: 4096 bytes is too small to hold an ext2/3/4 filesystem');
    expect((await json('big.json')).reason).toMatch(/exceeds the 1\.0 GiB limit \(max-image-size\)$/);
    expect((await json('empty.json')).reason).toBe('not a usable job image: it is empty (0 bytes)');
    expect(await readFile(path.join(failed, 'empty.log'), 'utf8')).toBe('\n[jobrunner] rejected: not a usable job image: it is empty (0 bytes)\n');
    const rejected = out.find((r) => r.file === 'empty.img');
    expect(rejected?.kind === 'rejected' && rejected.status).toEqual(await json('empty.json'));
  });

  it('the record has the same fields as one from the ordinary path (prescreenClaim)', async () => {
    await writeFile(path.join(queue, 'a.img'), '');
    await writeFile(path.join(queue, 'b.img'), '');
    const [bulk] = await chunk(['a.img']);
    expect(bulk?.kind).toBe('rejected');
    const sub = parseSubmission('b.img')!;
    const c = (await claim(queue, sub, new Date('2026-01-02T03:04:05.000Z')))!;
    await writeFile(path.join(root, 'none.json'), '{}');
    const { settings } = loadSettings(['--queue', queue, '--failed', failed, '--done', path.join(root, 'done')], { JOBRUNNER_CONFIG: path.join(root, 'none.json') });
    const pre = await prescreenClaim({ ...settings, maxImageSize: MAX }, c, 'test');
    expect(pre).not.toBeNull();
    const a = await json('a.json');
    const b = await json('b.json');
    const shape = (r: Record<string, unknown>): Record<string, unknown> => ({ ...r, name: 'x', id: 'x', submitted: 'x', publishedAs: 'x', finishedAt: 'x' });
    expect(shape(a)).toEqual(shape(b));
    expect(await readFile(path.join(failed, 'a.log'), 'utf8')).toBe(await readFile(path.join(failed, 'b.log'), 'utf8'));
  });

  it('an entry that grew after the look goes back into queue/ (same inode, same mtime); one swapped for another kind of entry becomes an ordinary claim', async () => {
    await writeFile(path.join(queue, 'grew.img'), Buffer.alloc(128 * 1024, 1)); // its size no longer rules it out
    const grew = await lstat(path.join(queue, 'grew.img'));
    await mkdir(path.join(queue, 'dir.img'));
    await writeFile(path.join(root, 'host'), '');
    await symlink(path.join(root, 'host'), path.join(queue, 'link.img'));
    await link(path.join(root, 'host'), path.join(queue, 'hard.img'));
    const out = await chunk(['grew.img', 'dir.img', 'link.img', 'hard.img', 'gone.img']);
    expect(kinds(out)).toEqual({ 'grew.img': 'requeued', 'dir.img': 'claimed', 'link.img': 'claimed', 'hard.img': 'claimed', 'gone.img': 'gone' });
    const back = await lstat(path.join(queue, 'grew.img'));
    expect([back.ino, back.nlink, back.mtimeMs]).toEqual([grew.ino, 1, grew.mtimeMs]);
    expect(await readdir(failed)).toEqual([]);
    for (const r of out) {
      if (r.kind !== 'claimed') continue;
      const c: Claim = r.claim;
      expect(c.lease).toMatchObject({ submitted: r.file, state: 'claimed', submittedAt: '2026-01-02T03:04:05.000Z' });
      expect(path.dirname(c.input)).toBe(c.dir);
    }
    // Nothing was opened or followed: the host file is as it was, still with both its names.
    expect((await lstat(path.join(root, 'host'))).nlink).toBe(2);
  });

  it('takes the next free name when NAME.* is in use, by any result kind; never replaces a file', async () => {
    await writeFile(path.join(failed, 'x.img'), 'old evidence');
    await writeFile(path.join(failed, 'x-1.log'), 'another result');
    await writeFile(path.join(failed, 'x-2.json'), '{"id":"someone"}');
    await writeFile(path.join(queue, 'x.img'), '');
    const out = await chunk(['x.img']);
    // Past a taken name the search steps 1, 2, 4...: x, x-1, x-2 are in use, x-4 is the next tried.
    expect(out[0]).toMatchObject({ kind: 'rejected', json: path.join(failed, 'x-4.json') });
    expect(await readFile(path.join(failed, 'x.img'), 'utf8')).toBe('old evidence');
    expect(await readFile(path.join(failed, 'x-1.log'), 'utf8')).toBe('another result');
    expect(await readFile(path.join(failed, 'x-2.json'), 'utf8')).toBe('{"id":"someone"}');
    expect((await readdir(failed)).sort()).toEqual(['x-1.log', 'x-2.json', 'x-4.img', 'x-4.json', 'x-4.log', 'x.img']);
    expect((await json('x-4.json')).publishedAs).toBe('x-4');
  });

  it('entries rejected for the same reason share one log inode (published results are never modified); each name stands alone', async () => {
    for (const f of ['a.img', 'b.img', 'c.img']) await writeFile(path.join(queue, f), '');
    await writeFile(path.join(queue, 'd.img'), Buffer.alloc(10));
    await chunk(['a.img', 'b.img', 'c.img', 'd.img']);
    const ino = async (f: string): Promise<number> => (await lstat(path.join(failed, f))).ino;
    expect(await ino('b.log')).toBe(await ino('a.log'));
    expect(await ino('c.log')).toBe(await ino('a.log'));
    expect(await ino('d.log')).not.toBe(await ino('a.log'));
    await unlink(path.join(failed, 'a.log'));
    expect(await readFile(path.join(failed, 'b.log'), 'utf8')).toBe('\n[jobrunner] rejected: not a usable job image: it is empty (0 bytes)\n');
    expect(await readFile(path.join(failed, 'd.log'), 'utf8')).toMatch(/10 bytes is too small/);
  });

  it('many entries of one name in one chunk each get their own name', async () => {
    const files = ['same.img', 'same@base.img', 'same.img.xz'];
    for (const f of files) await writeFile(path.join(queue, f), '');
    const out = await chunk(files);
    expect(out.map((r) => r.kind)).toEqual(['rejected', 'rejected', 'rejected']);
    expect(out.map((r) => (r.kind === 'rejected' ? r.status.publishedAs : null))).toEqual(['same', 'same-1', 'same-2']);
  });

  it.runIf(process.getuid?.() === 0)('failed/ on another file system (link cannot work): handed back as an ordinary claim, nothing half-published', async () => {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', failed]);
    try {
      await writeFile(path.join(queue, 'e.img'), '');
      const out = await chunk(['e.img']);
      expect(out[0]?.kind).toBe('claimed');
      expect(await readdir(failed)).toEqual([]);
    } finally {
      execFileSync('umount', [failed]);
    }
  });
});

describe('names under a flood of one NAME', () => {
  it('a NAME already taken thousands of times costs each entry a few probes, not thousands (the event loop is not held for seconds)', async () => {
    // 3,000 earlier results of NAME "a", and 128 new entries that all map to it (the base part is not in the name).
    for (let i = 0; i < 3000; i++) await writeFile(path.join(failed, `${i === 0 ? 'a' : `a-${i}`}.img`), '');
    const files = Array.from({ length: 128 }, (_, i) => `a@b${i}.img`);
    for (const f of files) await writeFile(path.join(queue, f), '');
    const t0 = performance.now();
    const first = await chunk(files.slice(0, 64));
    const t1 = performance.now();
    const second = await chunk(files.slice(64));
    const t2 = performance.now();
    const names = [...first, ...second].map((r) => (r.kind === 'rejected' ? r.status.publishedAs : r.kind));
    // The first entry steps past the taken names (1, 2, 4, ... further on); every later one takes
    // the name after the last one used. All are published, each under a name of its own.
    expect(names.every((n) => /^a-\d+$/.test(n)), names.slice(0, 5).join(' ')).toBe(true);
    expect(new Set(names).size).toBe(128);
    for (const n of names) expect(Number(n.slice(2))).toBeGreaterThanOrEqual(3000);
    console.log(`128 entries of a NAME taken 3,000 times: ${(t1 - t0).toFixed(0)} ms, then ${(t2 - t1).toFixed(0)} ms (64 each)`);
    expect(t1 - t0).toBeLessThan(2000);
    expect(t2 - t1).toBeLessThan(2000);
  });

  it('never places evidence beside another result\'s record (results that are a NAME.json alone)', async () => {
    await writeFile(path.join(failed, 'r.json'), JSON.stringify({ id: 'someone-else' }));
    await writeFile(path.join(queue, 'r.img'), '');
    const [r] = await chunk(['r.img']);
    expect(r).toMatchObject({ kind: 'rejected', json: path.join(failed, 'r-1.json') });
    expect((await readdir(failed)).sort()).toEqual(['r-1.img', 'r-1.json', 'r-1.log', 'r.json']);
  });
});

describe('recoverHeld: a chunk interrupted by a crash', () => {
  /** A chunk's state on disk at a crash point: journal written, entries held, and (maybe) some publishing done. */
  async function crashed(stage: 'held' | 'evidence' | 'published'): Promise<{ id: string; held: string }> {
    const dir = heldDir(queue);
    await mkdir(dir);
    const id = 'mxabcdef-0a1b2c3d';
    await writeFile(path.join(dir, 'mxabcdef-ffffffff.journal'),
      `${JSON.stringify({ id, file: 'job@base.img', submitted: 'job@base.img', mtime: '2026-01-02T03:04:05.000Z' })}\n{"id":"torn`);
    const held = path.join(dir, `${id}.img`);
    await writeFile(held, '');
    await writeFile(path.join(failed, 'job.img'), 'an older result');
    if (stage !== 'held') {
      await link(held, path.join(failed, 'job-1.img'));
      await writeFile(path.join(failed, 'job-1.log'), '\n[jobrunner] rejected: x\n');
    }
    if (stage === 'published') await writeFile(path.join(failed, 'job-1.json'), JSON.stringify({ id, publishedAs: 'job-1' }));
    return { id, held };
  }

  it('held, nothing published: an ordinary claim with the journal\'s id, name and time; the journal goes', async () => {
    const { id } = await crashed('held');
    const r = await recoverHeld({ queue, failed });
    expect(r.published).toBe(0);
    expect(r.claims).toHaveLength(1);
    expect(r.claims[0]!.lease).toMatchObject({ id, name: 'job', base: 'base', submitted: 'job@base.img', submittedAt: '2026-01-02T03:04:05.000Z', state: 'claimed' });
    expect(await readdir(path.join(queue, '.running'))).toEqual([id]);
    expect(await readFile(path.join(failed, 'job.img'), 'utf8')).toBe('an older result');
  });

  it('evidence linked but no record: the evidence and its log are removed, then an ordinary claim', async () => {
    await crashed('evidence');
    const r = await recoverHeld({ queue, failed });
    expect(r.claims).toHaveLength(1);
    expect((await readdir(failed)).sort()).toEqual(['job.img']);
  });

  it('published in full: only the held name goes (no second rejection)', async () => {
    await crashed('published');
    const r = await recoverHeld({ queue, failed });
    expect(r).toEqual({ claims: [], published: 1, requeued: 0 });
    expect(await readdir(path.join(queue, '.running'))).toEqual([]);
    expect((await readdir(failed)).sort()).toEqual(['job-1.img', 'job-1.json', 'job-1.log', 'job.img']);
  });

  it('evidence at a later name while an earlier one is free (an operator removed it): found by inode, removed, then a claim', async () => {
    const { id, held } = await crashed('held');
    await unlink(path.join(failed, 'job.img')); // NAME is free again; our evidence sits at NAME-3
    await link(held, path.join(failed, 'job-3.img'));
    await writeFile(path.join(failed, 'job-3.log'), '\n[jobrunner] rejected: x\n');
    const r = await recoverHeld({ queue, failed });
    expect(r.claims.map((c) => c.lease.id)).toEqual([id]);
    expect(await readdir(failed)).toEqual([]);
  });

  it('published at a later name while an earlier one is free: dropped, no second record', async () => {
    const { id, held } = await crashed('held');
    await unlink(path.join(failed, 'job.img'));
    await link(held, path.join(failed, 'job-3.img'));
    await writeFile(path.join(failed, 'job-3.json'), JSON.stringify({ id }));
    expect(await recoverHeld({ queue, failed })).toMatchObject({ claims: [], published: 1 });
  });

  it('a hand-back cut short (claim directory with a lease, no input): recovery drops it and claims again, start-up does not fail', async () => {
    const { id } = await crashed('held');
    const dir = path.join(queue, '.running', id);
    await mkdir(dir);
    await writeFile(path.join(dir, 'lease.json'), '{}');
    const r = await recoverHeld({ queue, failed });
    expect(r.claims.map((c) => c.lease.id)).toEqual([id]);
    expect(await readdir(dir)).toEqual(['input.img', 'lease.json']);
  });

  it('a hand-back to queue/ cut short (both names left): only the held name goes', async () => {
    const { held } = await crashed('held');
    await link(held, path.join(queue, 'job@base.img'));
    expect(await recoverHeld({ queue, failed })).toMatchObject({ claims: [], published: 0, requeued: 1 });
    expect((await lstat(path.join(queue, 'job@base.img'))).nlink).toBe(1);
  });

  it('a held entry the journal does not name (never expected) is claimed under its id', async () => {
    const dir = heldDir(queue);
    await mkdir(dir);
    await writeFile(path.join(dir, 'mxabcdef-01234567.img.xz'), '');
    const r = await recoverHeld({ queue, failed });
    expect(r.claims.map((c) => c.lease)).toMatchObject([{ id: 'mxabcdef-01234567', name: 'mxabcdef-01234567', compressed: true }]);
  });

  it('nothing held: nothing to do, nothing made', async () => {
    expect(await recoverHeld({ queue, failed })).toEqual({ claims: [], published: 0, requeued: 0 });
    expect(await readdir(path.join(queue, '.running'))).toEqual([]);
  });

  it('a chunk handed an entry it then lost (renamed away meanwhile) reports it gone', async () => {
    await writeFile(path.join(queue, 'a.img'), '');
    await rename(path.join(queue, 'a.img'), path.join(root, 'elsewhere.img'));
    expect(kinds(await chunk(['a.img']))).toEqual({ 'a.img': 'gone' });
  });
});
