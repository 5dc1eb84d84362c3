// Queue entries that are not plain files of ours (Run A): symlinks, hard links to host files,
// directories, FIFOs, device nodes, sockets. None may be followed, opened, written or published.
import { lstat, readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { expect, it } from 'vitest';
import type { Ctx } from '../lib/context.js';
import { statusOf } from '../lib/spool.js';
import type { RunA } from './queue-run.js';

/** Every entry below `dir` (recursively) with its lstat. */
async function walk(dir: string): Promise<Array<{ p: string; ino: number; kind: string }>> {
  const out: Array<{ p: string; ino: number; kind: string }> = [];
  for (const f of await readdir(dir).catch(() => [] as string[])) {
    const p = path.join(dir, f);
    const st = await lstat(p);
    out.push({ p, ino: st.ino, kind: st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'special' });
    if (st.isDirectory()) out.push(...await walk(p));
  }
  return out;
}

const exists = (p: string): Promise<boolean> => lstat(p).then(() => true, () => false);

/** Register the cases; `run()` returns Run A's outcome (available once its beforeAll is done). */
export function entryCases(ctx: () => Ctx, run: () => RunA): void {
  it('symlinks (to a valid job, a device, a directory, a FIFO, nowhere) are rejected, never followed, and not published', async () => {
    const { spool } = run();
    for (const name of ['link-to-job.img', 'link-to-dev.img', 'link-to-dir.img', 'link-to-fifo.img', 'link-dangling.img']) {
      const st = await statusOf(spool, name);
      expect(st, name).toMatchObject({ status: 'rejected', dir: 'failed', exitCode: null, output: null });
      expect(st.reason).toMatch(/it is a symbolic link, not a regular file; the link was removed from the queue, never followed/);
      // No evidence file: a symlink in failed/ would point readers at a host file.
      expect(await exists(path.join(spool.failed, `${st.publishedAs}.img`)), name).toBe(false);
      expect(await exists(path.join(spool.queue, name)), name).toBe(false);
    }
  });

  it('hard links to host files are rejected without being run or published; the host file keeps content, mtime and link count', async () => {
    const { spool } = run();
    const c = ctx();
    for (const name of ['hardlink-job.img', 'hardlink-secret.img']) {
      const st = await statusOf(spool, name);
      expect(st, name).toMatchObject({ status: 'rejected', dir: 'failed', output: null, startedAt: null });
      expect(st.reason).toMatch(/it has 2 hard links \(submit a copy, not a link\); this name was unlinked/);
      expect(st.input.sha256).toBeNull(); // never even read
      expect(await exists(path.join(spool.failed, `${st.publishedAs}.img`)), name).toBe(false);
    }
    // No published file shares an inode with a host file (a link in failed/ would disclose it).
    const hostInodes = new Set(await Promise.all([c.host.jobImage, c.host.secret].map(async (f) => (await lstat(f)).ino)));
    const published = [...await walk(spool.done), ...await walk(spool.failed)];
    expect(published.filter((e) => hostInodes.has(e.ino))).toEqual([]);
    for (const f of [c.host.jobImage, c.host.secret]) expect((await lstat(f)).nlink, f).toBe(1);
    expect(await c.ledger.modifiedSentinels()).toEqual([]);
  });

  it('directories, FIFOs, device nodes and sockets are rejected by kind without being opened; a directory is moved aside intact', async () => {
    const { spool } = run();
    const kinds: Record<string, string> = {
      'dir.img': 'a directory', 'fifo.img': 'a FIFO', 'chardev.img': 'a character device', 'blockdev.img': 'a block device', 'socket.img': 'a socket',
    };
    for (const [name, kind] of Object.entries(kinds)) {
      const st = await statusOf(spool, name);
      expect(st, name).toMatchObject({ status: 'rejected', dir: 'failed' });
      expect(st.reason).toContain(`it is ${kind}, not a regular file`);
      expect(await exists(path.join(spool.queue, name)), name).toBe(false);
    }
    const dir = await statusOf(spool, 'dir.img');
    const aside = /moved aside, untouched, to (\S+)$/.exec(dir.reason)?.[1];
    expect(aside && await readFile(path.join(aside, 'keep.txt'), 'utf8')).toBe('kept\n');
    // Nothing but regular files (and the one directory moved aside) was published.
    const odd = [...await walk(spool.done), ...await walk(spool.failed)].filter((e) => e.kind !== 'file' && !(aside && (e.p === aside)));
    expect(odd).toEqual([]);
  });

  it('the run ends by itself (--once), with nothing left claimed and no temp files', async () => {
    const r = run();
    expect(r.exitCode, r.output.slice(-3000)).toBe(0);
    expect(r.leftovers).toEqual([]);
    const queue = (await readdir(r.spool.queue)).filter((f) => f !== '.running' && f !== '.jobrunner.lock');
    expect(queue).toEqual(['..img']); // the dotfile is an upload in progress by convention: left alone
  });
}
