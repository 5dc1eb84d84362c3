// Bulk rejection when a durability barrier fails part-way (src/spool/reject-bulk.ts): nothing is
// lost and nothing is left half-published. The barrier is replaced by one that fails at a chosen
// call: before NAME.json is linked, the chunk's entries are handed back (ordinary claims, failed/
// untouched); after, they are reported published and their held names stay for recovery, which
// then finds them published and drops only the held names.
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { sizeProblem } from '../../src/job/validate.js';
import { heldDir, recoverHeld, rejectChunk, type BulkRejector } from '../../src/spool/reject-bulk.js';
import { scratch } from '../helpers.js';

const barrier = vi.hoisted(() => ({ calls: 0, failAt: 0 }));
vi.mock('../../src/fsync-shared.js', () => ({
  syncShared: (): Promise<void> => {
    barrier.calls++;
    return barrier.calls === barrier.failAt ? Promise.reject(new Error('EIO: syncfs failed')) : Promise.resolve();
  },
}));

let root: string;
let o: BulkRejector;
beforeEach(async () => {
  root = await scratch('bulkfault');
  o = { queue: path.join(root, 'queue'), failed: path.join(root, 'failed'), version: 'test', judge: (st, sub) => sizeProblem(st.size, sub.compressed, 2 ** 30) };
  await mkdir(path.join(o.queue, '.running'), { recursive: true });
  await mkdir(o.failed);
  for (const f of ['a.img', 'b.img']) await writeFile(path.join(o.queue, f), '');
  barrier.calls = 0;
});
const entries = [{ file: 'a.img', mtime: new Date() }, { file: 'b.img', mtime: new Date() }];

describe('a barrier that fails part-way', () => {
  it('the journal\'s barrier: nothing moved, the chunk throws, the entries stay queued', async () => {
    barrier.failAt = 1;
    await expect(rejectChunk(o, entries)).rejects.toThrow(/EIO/);
    expect((await readdir(o.queue)).sort()).toEqual(['.running', 'a.img', 'b.img']);
    expect(await readdir(path.join(o.queue, '.running'))).toEqual([]);
  });

  it('before NAME.json is linked: the entries are handed back as ordinary claims; failed/ is untouched', async () => {
    barrier.failAt = 2;
    const r = await rejectChunk(o, entries);
    expect(String(r.error)).toMatch(/EIO/);
    expect(r.outcomes.map((x) => x.kind)).toEqual(['claimed', 'claimed']);
    expect(await readdir(o.failed)).toEqual([]);
    expect((await readdir(path.join(o.queue, '.running'))).length).toBe(2); // the two claims, no .held
  });

  it('after NAME.json is linked, before its barrier: reported published; the held names stay for recovery, which drops only them', async () => {
    barrier.failAt = 3;
    const r = await rejectChunk(o, entries);
    expect(String(r.error)).toMatch(/EIO/);
    expect(r.outcomes.map((x) => x.kind)).toEqual(['rejected', 'rejected']);
    expect((await readdir(heldDir(o.queue))).filter((f) => f.endsWith('.img')).length).toBe(2);
    const rec = await recoverHeld(o);
    expect(rec).toEqual({ claims: [], published: 2, requeued: 0 });
    expect(await readdir(path.join(o.queue, '.running'))).toEqual([]);
    expect((await readdir(o.failed)).filter((f) => f.endsWith('.json')).sort()).toEqual(['a.json', 'b.json']);
  });
});
