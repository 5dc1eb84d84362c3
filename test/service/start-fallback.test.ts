// The no-qemu tier, --start restore (the default) with a qemu that cannot make a VM template (the
// fake qemu never reaches construir's ready point): the template build fails in the background,
// every job still boots cold and succeeds, the operator gets one warning (not one per job), and
// each status records the restore that was asked for, the cold start used and why.
import { copyFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { fixtureJob } from '../lib/fixture-base.js';
import { published, startInProcess, tierSpool, type InProcess, type TierSpool } from '../lib/tier.js';
import { waitFor } from '../helpers.js';

const JOBS = ['one', 'two', 'three'];

describe('--start restore falls back to a cold boot when no template can be built', () => {
  let t: TierSpool;
  let svc: InProcess;
  beforeAll(async () => {
    t = await tierSpool('start-fallback', ['--start', 'restore', '--concurrency', '1']);
    svc = await startInProcess(t);
    // One job at a time, each dropped after the previous one is published: the first finds no
    // template (build started in the background), later ones find the build failed.
    for (const [i, name] of JOBS.entries()) {
      await copyFile(await fixtureJob(t.root, name, 'ok'), path.join(t.queue, `${name}.img`));
      await waitFor(`${name} published`, async () => (await published(t)).length === i + 1, 30_000);
    }
    await svc.service.stop('test done');
  }, 120_000);

  it('every job succeeds, started cold, and its status says a restore was asked for and why it was not used', async () => {
    const all = await published(t);
    expect(all.map((s) => [s.submitted, s.status]).sort()).toEqual(JOBS.map((n) => [`${n}.img`, 'succeeded']).sort());
    for (const s of all) {
      expect(s.start).toMatchObject({ requested: 'restore', used: 'cold', timings: null });
      expect(s.start?.fallback).toMatch(/template/);
    }
  });

  it('the operator is warned once, with the reason, not once per job', () => {
    const warnings = svc.logs.filter((l) => l.level === 40 && l.msg === 'job VM start');
    expect(warnings).toHaveLength(1);
    expect(String(warnings[0]!.reason)).toMatch(/^no usable VM template: .*; booting cold instead$/s);
  });

  it('the failed build leaves no template and no lock behind', async () => {
    const dir = path.join(t.baseDir, 'default', 'templates');
    expect(await readdir(dir).catch(() => [])).toEqual([]);
  });
});
