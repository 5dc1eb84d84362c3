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
const json = async (f: string): Promise<Record<string, unknown>> => JSON.parse(await readFile(path.join(failed, f), 'utf8')) as Record<string, unknown>;

describe('rejectChunk', () => {
  it('publishes each entry as the ordinary path would: record, evidence (the same inode), log; nothing left held', async () => {
    await writeFile(path.join(queue, 'empty.img'), '');
    await writeFile(path.join(queue, 'small.img'), Buffer.alloc(4096, 1));
    await writeFile(path.join(queue, 'big.img'), '');
    await truncate(path.join(queue, 'big.img'), MAX + 1);
    await writeFile(path.join(queue, 'nothing.img.xz'), '');
    const ino = (await lstat(path.join(queue, 'small.img'))).ino;
    const out = await rejectChunk(o, ['empty.img', 'small.img', 'big.img', 'nothing.img.xz'].map(entry));
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
    const [bulk] = await rejectChunk(o, [entry('a.img')]);
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

  it('an entry that grew, or was swapped for another kind of entry, after the look is handed back as an ordinary claim', async () => {
    await writeFile(path.join(queue, 'grew.img'), Buffer.alloc(128 * 1024, 1)); // its size no longer rules it out
    await mkdir(path.join(queue, 'dir.img'));
    await writeFile(path.join(root, 'host'), '');
    await symlink(path.join(root, 'host'), path.join(queue, 'link.img'));
    await link(path.join(root, 'host'), path.join(queue, 'hard.img'));
    const out = await rejectChunk(o, ['grew.img', 'dir.img', 'link.img', 'hard.img', 'gone.img'].map(entry));
    expect(kinds(out)).toEqual({ 'grew.img': 'claimed', 'dir.img': 'claimed', 'link.img': 'claimed', 'hard.img': 'claimed', 'gone.img': 'gone' });
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
    const out = await rejectChunk(o, [entry('x.img')]);
    expect(out[0]).toMatchObject({ kind: 'rejected', json: path.join(failed, 'x-3.json') });
    expect(await readFile(path.join(failed, 'x.img'), 'utf8')).toBe('old evidence');
    expect(await readFile(path.join(failed, 'x-1.log'), 'utf8')).toBe('another result');
    expect(await readFile(path.join(failed, 'x-2.json'), 'utf8')).toBe('{"id":"someone"}');
    expect((await readdir(failed)).sort()).toEqual(['x-1.log', 'x-2.json', 'x-3.img', 'x-3.json', 'x-3.log', 'x.img']);
    expect((await json('x-3.json')).publishedAs).toBe('x-3');
  });

  it('entries rejected for the same reason share one log inode (published results are never modified); each name stands alone', async () => {
    for (const f of ['a.img', 'b.img', 'c.img']) await writeFile(path.join(queue, f), '');
    await writeFile(path.join(queue, 'd.img'), Buffer.alloc(10));
    await rejectChunk(o, ['a.img', 'b.img', 'c.img', 'd.img'].map(entry));
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
    const out = await rejectChunk(o, files.map(entry));
    expect(out.map((r) => r.kind)).toEqual(['rejected', 'rejected', 'rejected']);
    expect(out.map((r) => (r.kind === 'rejected' ? r.status.publishedAs : null))).toEqual(['same', 'same-1', 'same-2']);
  });

  it.runIf(process.getuid?.() === 0)('failed/ on another file system (link cannot work): handed back as an ordinary claim, nothing half-published', async () => {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', failed]);
    try {
      await writeFile(path.join(queue, 'e.img'), '');
      const out = await rejectChunk(o, [entry('e.img')]);
      expect(out[0]?.kind).toBe('claimed');
      expect(await readdir(failed)).toEqual([]);
    } finally {
      execFileSync('umount', [failed]);
    }
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
    expect(r).toEqual({ claims: [], published: 1 });
    expect(await readdir(path.join(queue, '.running'))).toEqual([]);
    expect((await readdir(failed)).sort()).toEqual(['job-1.img', 'job-1.json', 'job-1.log', 'job.img']);
  });

  it('a held entry the journal does not name (never expected) is claimed under its id', async () => {
    const dir = heldDir(queue);
    await mkdir(dir);
    await writeFile(path.join(dir, 'mxabcdef-01234567.img.xz'), '');
    const r = await recoverHeld({ queue, failed });
    expect(r.claims.map((c) => c.lease)).toMatchObject([{ id: 'mxabcdef-01234567', name: 'mxabcdef-01234567', compressed: true }]);
  });

  it('nothing held: nothing to do, nothing made', async () => {
    expect(await recoverHeld({ queue, failed })).toEqual({ claims: [], published: 0 });
    expect(await readdir(path.join(queue, '.running'))).toEqual([]);
  });

  it('a chunk handed an entry it then lost (renamed away meanwhile) reports it gone', async () => {
    await writeFile(path.join(queue, 'a.img'), '');
    await rename(path.join(queue, 'a.img'), path.join(root, 'elsewhere.img'));
    expect(kinds(await rejectChunk(o, [entry('a.img')]))).toEqual({ 'a.img': 'gone' });
  });
});
