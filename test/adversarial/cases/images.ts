// Images that are not what they claim (Run A): empty, junk, other disk formats naming host files,
// a 1 TiB sparse file, a truncated filesystem, and broken or oversized .img.xz files. Each is
// rejected with a reason that names the problem, and the submitted bytes are kept untouched.
import { lstat } from 'node:fs/promises';
import path from 'node:path';
import { expect, it } from 'vitest';
import { sha256, statusOf } from '../lib/spool.js';
import type { RunA } from './queue-run.js';

const CASES: Array<[string, RegExp]> = [
  ['empty.img', /it is empty \(0 bytes\)/],
  ['junk.img', /no ext2\/3\/4 superblock/],
  ['qcow2.img', /it is a qcow2 image, not a raw filesystem image/],
  ['vmdk.img', /it is a VMDK descriptor \(it names other files\)/],
  ['truncfs.img', /the guest could not use the job image \(mount-failed\)/],
  ['corrupt.img.xz', /corrupt or truncated \.xz/],
  ['truncated.img.xz', /corrupt, truncated or not \.xz|corrupt or truncated \.xz/],
  ['bomb.img.xz', /over the size cap|past the size cap/],
  ['qcow2inside.img.xz', /it is a qcow2 image/],
  ['notxz.img.xz', /xz|format/i],
];

/** Register the cases; `run()` returns Run A's outcome. */
export function imageCases(run: () => RunA): void {
  it('lying images and broken .xz are rejected with a specific reason; the submitted bytes are kept as evidence, unchanged', async () => {
    const { spool, sha } = run();
    for (const [name, reason] of CASES) {
      const st = await statusOf(spool, name);
      expect(st, name).toMatchObject({ status: 'rejected', dir: 'failed', output: null });
      expect(st.reason, name).toMatch(reason);
      const ext = name.endsWith('.xz') ? 'img.xz' : 'img';
      expect(await sha256(path.join(spool.failed, `${st.publishedAs}.${ext}`)), name).toBe(sha.get(name));
      if (st.input.sha256 !== null) expect(st.input.sha256, name).toBe(sha.get(name));
    }
  });

  it('only the truncated filesystem reached a guest; every other lying image was refused on the host, before qemu', async () => {
    const { spool } = run();
    for (const [name] of CASES) {
      const st = await statusOf(spool, name);
      expect(st.accel !== null, name).toBe(name === 'truncfs.img');
    }
  });

  it('a 1 TiB sparse file is refused by its size alone: not read, not hashed, not copied', async () => {
    const { spool } = run();
    const st = await statusOf(spool, 'huge.img');
    expect(st).toMatchObject({ status: 'rejected', input: { bytes: 2 ** 40, sha256: null } });
    expect(st.reason).toMatch(/1\.0 TiB exceeds the 200 MiB limit \(max-image-size\)/);
    // Refused at intake by its size (job/prescreen.ts), before any claim started: nothing read.
    expect(st.startedAt ?? null).toBeNull();
    const kept = await lstat(path.join(spool.failed, 'huge.img'));
    expect([kept.size, kept.blocks]).toEqual([2 ** 40, 0]); // the same sparse file, moved by a link
  });
}
