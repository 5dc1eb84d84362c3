// `jobrunner submit DIR` without --server: packaged (mkimage), compressed with our own xz, and
// dropped into the local queue atomically (no temp file left, a valid .img.xz under NAME).
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { jobTree, jobrunner, runProc, scratch } from '../helpers.js';

describe('jobrunner submit (local queue)', () => {
  it('packages a directory, compresses it and renames it into the queue', async () => {
    const work = await scratch('submit-local');
    const tree = await jobTree(path.join(work, 'tree'), 'echo hi');
    const queue = path.join(work, 'queue');
    const r = await jobrunner(['submit', tree, '--name', 'local-job', '--queue', queue]);
    expect(r.code, r.stderr).toBe(0);
    expect(await readdir(queue)).toEqual(['local-job.img.xz']);
    const f = path.join(queue, 'local-job.img.xz');
    expect((await runProc('xz', ['-t', f])).code).toBe(0);
    // mkimage's 1 GiB of free space is holes: the upload-sized file is small.
    expect((await stat(f)).size).toBeLessThan(1 << 20);
    const bad = await jobrunner(['submit', tree, '--name', '../evil', '--queue', queue]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/job name/);
    expect(await readdir(queue)).toEqual(['local-job.img.xz']);
  });
});
