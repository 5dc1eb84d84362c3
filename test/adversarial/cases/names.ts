// Hostile names (Run A): commas aimed at qemu option strings, spaces, newlines, leading '-', '..',
// bytes that are not UTF-8, 255-byte names, and the same result name twice.
import { lstat, readdir } from 'node:fs/promises';
import path from 'node:path';
import { expect, it } from 'vitest';
import { allStatuses, sha256, statusOf } from '../lib/spool.js';
import { RAW, type RunA } from './queue-run.js';

const exists = (p: string): Promise<boolean> => lstat(p).then(() => true, () => false);

/** Register the cases; `run()` returns Run A's outcome. */
export function nameCases(run: () => RunA): void {
  it('a name full of commas and qemu options runs normally and never reaches the qemu command line', async () => {
    const r = run();
    const name = 'probe,file=x,format=qcow2.img';
    const st = await statusOf(r.spool, name);
    expect(st).toMatchObject({ status: 'succeeded', dir: 'done', publishedAs: 'probe,file=x,format=qcow2' });
    expect(r.watch.samples.size).toBeGreaterThan(0);
    for (const q of r.watch.samples.values()) {
      expect(q.argv.join(' ')).not.toContain('file=x');
      expect(q.argv.some((a) => a.includes(r.spool.root))).toBe(false);
    }
  });

  it('a name that is not UTF-8 is renamed inside the queue, runs, and its original bytes are recorded', async () => {
    const r = run();
    const st = await statusOf(r.spool, 'caf\\xe9-\\xff\\xfe.img');
    expect(st).toMatchObject({ status: 'succeeded', publishedAs: 'caf%E9-%FF%FE' });
    expect(st.input.sha256).toBe(r.sha.get('cafe'));
    expect(await exists(path.join(r.spool.done, 'caf%E9-%FF%FE.img.xz'))).toBe(true);
    const raw = await readdir(r.spool.queue, { encoding: 'buffer' });
    expect(raw.some((b) => b.equals(RAW.cafe) || b.equals(RAW.long))).toBe(false);
    expect(r.output).toContain('renamed a queue entry whose name is not valid UTF-8');
  });

  it('255-byte names (UTF-8 or not) give result names that fit, within 200 bytes', async () => {
    const r = run();
    const long = await statusOf(r.spool, `${'L'.repeat(251)}.img`);
    expect(long.publishedAs).toBe('L'.repeat(200));
    const raw = await statusOf(r.spool, `${'\\xff'.repeat(120)}${'N'.repeat(131)}.img`);
    expect(Buffer.byteLength(raw.publishedAs)).toBeLessThanOrEqual(200);
    expect(raw.publishedAs.startsWith('%FF%FF')).toBe(true);
    for (const st of [long, raw]) expect(await exists(path.join(r.spool.failed, `${st.publishedAs}.json`))).toBe(true);
  });

  it('spaces, newlines, leading dashes and dots are made safe in result names; the submitted name is kept verbatim', async () => {
    const r = run();
    const want: Record<string, string> = { 'my job.img': 'my job', '-rf.img': '_rf', '--help.img': '__help', 'x..y.img': 'x..y' };
    for (const [name, published] of Object.entries(want)) {
      const st = await statusOf(r.spool, name);
      expect(st.publishedAs, name).toBe(published);
      expect(await sha256(path.join(r.spool.failed, `${published}.img`)), name).toBe(r.sha.get(name));
    }
    expect((await statusOf(r.spool, 'new\nline.img')).publishedAs).toBe('new_line');
  });

  it('two submissions with the same result name both get a result: NAME and NAME-1', async () => {
    const r = run();
    const names = async (a: string, b: string): Promise<string[]> =>
      [(await statusOf(r.spool, a)).publishedAs, (await statusOf(r.spool, b)).publishedAs].sort();
    expect(await names('dup.img', 'dup.img.xz')).toEqual(['dup', 'dup-1']);
    expect(await names('a\nb.img', 'a_b.img')).toEqual(['a_b', 'a_b-1']);
    // And no name was published twice over.
    const all = (await allStatuses(r.spool)).map((s) => `${s.dir}/${s.publishedAs}`);
    expect(new Set(all).size).toBe(all.length);
  });

  it('a base image name with .. or one that does not exist is refused as the job\'s problem', async () => {
    const r = run();
    expect(await statusOf(r.spool, 'evil@...img')).toMatchObject({ status: 'rejected', reason: expect.stringMatching(/asks for base image '\.\.'.*Expected a base image name/) });
    expect(await statusOf(r.spool, 'nobase@nosuch.img')).toMatchObject({ status: 'rejected', reason: expect.stringMatching(/asks for base image 'nosuch'.*not found/) });
  });
}
