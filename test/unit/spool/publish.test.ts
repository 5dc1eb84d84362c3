// spool/publish: mail-style publishing. Names never overwritten (NAME-1, NAME-2…), NAME.json last,
// and a failure part-way leaves no final name of the result behind.
import { writeFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempName } from '../../../src/fsutil.js';
import { publish, sweepTemps } from '../../../src/spool/publish.js';

const dir = (): Promise<string> => mkdtemp(path.join(os.tmpdir(), 'jr-publish-'));
const ls = async (d: string): Promise<string[]> => (await readdir(d)).sort();

/** Temps for one result: an image and a log with recognisable content. */
async function temps(d: string, label: string): Promise<Record<string, string>> {
  const img = tempName(d, `${label}.img.xz`);
  const log = tempName(d, `${label}.log`);
  await writeFile(img, `image of ${label}`);
  await writeFile(log, `log of ${label}`);
  return { 'img.xz': img, log };
}

describe('publish', () => {
  it('links every temp to NAME.<ext>, writes NAME.json from the final name, and consumes the temps', async () => {
    const d = await dir();
    const name = await publish(d, 'job', { temps: await temps(d, 'a'), status: (n) => ({ publishedAs: n }) });
    expect(name).toBe('job');
    expect(await ls(d)).toEqual(['job.img.xz', 'job.json', 'job.log']);
    expect(await readFile(path.join(d, 'job.img.xz'), 'utf8')).toBe('image of a');
    expect(JSON.parse(await readFile(path.join(d, 'job.json'), 'utf8'))).toEqual({ publishedAs: 'job' });
  });

  it('takes NAME-1, NAME-2… when any file of NAME exists, never touching what is there', async () => {
    const d = await dir();
    await writeFile(path.join(d, 'job.log'), 'someone else');
    await writeFile(path.join(d, 'job-1.json'), 'someone else');
    expect(await publish(d, 'job', { temps: await temps(d, 'a'), status: (n) => ({ n }) })).toBe('job-2');
    expect(await readFile(path.join(d, 'job.log'), 'utf8')).toBe('someone else');
    expect(await readFile(path.join(d, 'job-1.json'), 'utf8')).toBe('someone else');
    expect(await ls(d)).toEqual(['job-1.json', 'job-2.img.xz', 'job-2.json', 'job-2.log', 'job.log']);
  });

  it('concurrent publishes of one name get distinct names, each with its own content', async () => {
    const d = await dir();
    const labels = ['a', 'b', 'c', 'd', 'e'];
    const names = await Promise.all(labels.map(async (l) => {
      const t = await temps(d, l);
      return publish(d, 'same', { temps: t, status: () => ({ label: l }) });
    }));
    expect([...names].sort()).toEqual(['same', 'same-1', 'same-2', 'same-3', 'same-4']);
    for (const [i, n] of names.entries()) {
      expect(await readFile(path.join(d, `${n}.img.xz`), 'utf8')).toBe(`image of ${labels[i]}`);
      expect(JSON.parse(await readFile(path.join(d, `${n}.json`), 'utf8'))).toEqual({ label: labels[i] });
    }
    expect((await ls(d)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('a failure part-way removes every final name it made; the temps stay for the caller', async () => {
    const d = await dir();
    const t = await temps(d, 'a');
    await expect(publish(d, 'job', { temps: t, status: () => { throw new Error('disk full'); } })).rejects.toThrow('disk full');
    expect((await ls(d)).filter((f) => f.startsWith('job'))).toEqual([]);
    expect((await ls(d)).sort()).toEqual(Object.values(t).map((p) => path.basename(p)).sort());
  });

  it('a name taken between the check and the link (NAME.json appears) moves on to NAME-1 and undoes NAME.*', async () => {
    const d = await dir();
    let first = true;
    const name = await publish(d, 'job', {
      temps: await temps(d, 'a'),
      status: (n) => {
        // Another writer creates job.json just before ours is linked.
        if (first) { first = false; writeFileSync(path.join(d, 'job.json'), 'theirs'); }
        return { n };
      },
    });
    expect(name).toBe('job-1');
    const files = await ls(d);
    expect(files).toEqual(['job-1.img.xz', 'job-1.json', 'job-1.log', 'job.json']);
    expect(await readFile(path.join(d, 'job.json'), 'utf8')).toBe('theirs');
  });
});

describe('temp names', () => {
  it('are unique per call, not per millisecond', () => {
    const names = new Set(Array.from({ length: 2000 }, () => tempName('/d', 'x.log')));
    expect(names.size).toBe(2000);
    for (const n of names) expect(path.basename(n)).toMatch(/^\.x\.log\..*\.tmp$/);
  });

  it('sweepTemps removes only .*.tmp files and says how many', async () => {
    const d = await dir();
    for (const f of ['.a.tmp', '.b.log.1.tmp', 'c.tmp', '.d', 'e.json']) await writeFile(path.join(d, f), '');
    expect(await sweepTemps(d)).toBe(2);
    expect(await ls(d)).toEqual(['.d', 'c.tmp', 'e.json']);
  });
});
