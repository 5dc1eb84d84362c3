// The API's queue listing while a claim is half made. claim() writes the lease, waits for the
// durability barrier, and only then moves the file in (spool/claim.ts): in that window the job has
// a lease in queue/.running and its file still in queue/. The dashboard showed it twice (positions
// 1 and 2, same id) in e2e/dashboard; every listing must show it once, before, during and after.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { Settings } from '../../src/config.js';
import { JobsApi } from '../../src/service/api.js';
import { Uploads } from '../../src/service/uploads.js';
import { claim } from '../../src/spool/claim.js';
import { parseSubmission } from '../../src/spool/names.js';
import { scratch } from '../helpers.js';

// The barrier is held open by the test: that is the window.
const gate = vi.hoisted(() => ({ calls: 0, hold: null as Promise<void> | null }));
vi.mock('../../src/fsync-shared.js', () => ({
  syncShared: (): Promise<void> => { gate.calls++; return gate.calls === 1 && gate.hold ? gate.hold : Promise.resolve(); },
}));

let queue: string;
let api: JobsApi;
beforeEach(async () => {
  const root = await scratch('claimwindow');
  queue = path.join(root, 'queue');
  await mkdir(path.join(queue, '.running'), { recursive: true });
  const settings = { queue, done: path.join(root, 'done'), failed: path.join(root, 'failed'), timeout: 7_200_000 } as Settings;
  api = new JobsApi({ settings, uploads: new Uploads(queue) });
  gate.calls = 0;
});

async function queued(): Promise<Array<{ id: string | null; name: string; position: number | null }>> {
  const { jobs } = await api.list({ state: ['queued'], limit: 100, offset: 0 });
  return jobs.map((j) => ({ id: j.id, name: j.name, position: j.position }));
}

describe('the queue listing while a claim is made', () => {
  it('shows a job once: from queue/ before the claim, as the claim during and after it', async () => {
    await writeFile(path.join(queue, 'first.img'), '');
    await writeFile(path.join(queue, 'second.img'), '');
    expect((await queued()).map((j) => j.name).sort()).toEqual(['first', 'second']);

    let open!: () => void;
    gate.hold = new Promise((r) => { open = r; });
    const making = claim(queue, parseSubmission('first.img')!, new Date(Date.now() - 5000));
    await vi.waitFor(() => expect(gate.calls).toBe(1)); // the lease is written, the file not yet moved
    const during = await queued();
    expect(during.map((j) => j.name).sort()).toEqual(['first', 'second']);
    const first = during.find((j) => j.name === 'first')!;
    expect(first.id).toMatch(/^[0-9a-z]+-[0-9a-f]{8}$/); // listed from its lease, with its id
    expect(during.map((j) => j.position).sort()).toEqual([1, 2]);

    open();
    const c = await making;
    expect(c).not.toBeNull();
    expect(await queued()).toEqual([{ id: c!.lease.id, name: 'first', position: 1 }, { id: null, name: 'second', position: 2 }]);
  });

  it('skips a claim whose lease is still empty or half-written (it threw: a 500 for every upload\'s quota check)', async () => {
    await writeFile(path.join(queue, 'a.img'), '');
    const torn: Array<[string, string]> = [['mxaaaaaa-0000000a', ''], ['mxaaaaaa-0000000b', '{"id": "mxaa'], ['mxaaaaaa-0000000c', 'null']];
    for (const [id, text] of torn) {
      await mkdir(path.join(queue, '.running', id));
      await writeFile(path.join(queue, '.running', id, 'lease.json'), text);
    }
    expect(await queued()).toEqual([{ id: null, name: 'a', position: 1 }]);
    expect((await api.summary()).queued).toBe(1);
  });
});
