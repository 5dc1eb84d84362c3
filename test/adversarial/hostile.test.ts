// Issue 5: hostile inputs and faults. The service must survive them, lose nothing and touch nothing
// outside its spool. Runs the real service as a process (real qemu under TCG for guests, a fake
// qemu for qemu's own failures), batching many hostile cases per run. At the end it prints three
// figures computed from what happened: jobs lost, host files modified, qemu processes left.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HAVE_BASE } from '../helpers.js';
import { makeContext, type Ctx } from './lib/context.js';
import { diskFullCases } from './cases/disk-full.js';
import { entryCases } from './cases/entries.js';
import { fakeQemuCases } from './cases/fake-qemu.js';
import { guestCases } from './cases/guests.js';
import { imageCases } from './cases/images.js';
import { nameCases } from './cases/names.js';
import { killCases } from './cases/kills.js';
import { orphanSweepCases } from './cases/orphan-sweep.js';
import { runQueue, type RunA } from './cases/queue-run.js';
import { startupCases } from './cases/startup.js';

const ROOT = process.getuid?.() === 0;
let ctx: Ctx | null = null;
const getCtx = (): Ctx => { if (!ctx) throw new Error('context not built'); return ctx; };
/** The decompressed result of the guest that rewrote its own header (resubmitted by a later run). */
let rewritten: string | null = null;

describe.skipIf(!HAVE_BASE)('hostile inputs and faults', () => {
  beforeAll(async () => { ctx = await makeContext(); });

  afterAll(async () => {
    if (!ctx) return;
    const f = await ctx.ledger.figures();
    console.log(`[adversarial] jobs lost: ${f.jobsLost}; host files modified: ${f.hostFilesModified}; qemu processes left after kill tests: ${f.qemuLeft}`);
    console.log(`[adversarial] detail: ${JSON.stringify(f.detail)}`);
  });

  describe('run A: one --once run over a queue of hostile entries (real qemu, concurrency 2)', () => {
    let a: RunA | null = null;
    const run = (): RunA => { if (!a) throw new Error('run A did not complete'); return a; };
    beforeAll(async () => { a = await runQueue(getCtx()); });

    describe('queue entries that are not plain files of ours', () => entryCases(getCtx, run));
    describe('images that are not what they claim', () => imageCases(run));
    describe('names', () => nameCases(run));
    describe('guests', () => guestCases(getCtx, run, (p) => { rewritten = p; }));
  });

  describe('run B: host faults during real runs (qemu killed from outside, service SIGKILLed)', () => killCases(getCtx));
  describe('the restart sweep: a qemu that outlived its service', () => orphanSweepCases(getCtx));
  describe('run C: qemu itself misbehaving (a fake qemu)', () => fakeQemuCases(getCtx, () => rewritten));
  // tmpfs mounts and setpriv need root (as the service itself does for --run-as).
  describe.skipIf(!ROOT)('run D: disk full while publishing', () => diskFullCases(getCtx));
  describe('start-up and privilege faults', () => startupCases(getCtx));

  describe('the three figures', () => {
    it('jobs lost, host files modified and qemu processes left are all 0', async () => {
      const f = await getCtx().ledger.figures();
      expect(f.detail).toMatchObject({ lost: [], modified: [] });
      expect([f.jobsLost, f.hostFilesModified, f.qemuLeft]).toEqual([0, 0, 0]);
    });
  });
});
