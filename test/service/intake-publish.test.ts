// Intake, rejection and publishing through the real Service with a fake qemu: what is claimed and
// what is ignored, every kind of entry or image that is refused before any qemu sees it, names
// made safe, name collisions (NAME-1), and what happens when done/ or failed/ cannot be written.
import { execFile } from 'node:child_process';
import { copyFile, link, mkdir, readFile, rename, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { fixtureBase, fixtureJob } from '../lib/fixture-base.js';
import { ls, published, qemuStarts, runOnce, startInProcess, statusOf, tierSpool, waitFor, type InProcess, type TierSpool } from '../lib/tier.js';

const exec = promisify(execFile);
const xz = async (src: string, out: string): Promise<string> => { await exec('sh', ['-c', 'xz -1 -c -- "$1" > "$2"', 'sh', src, out]); return out; };

describe('intake and rejection in one --once run', { timeout: 90_000 }, () => {
  let t: TierSpool;
  let svc: InProcess;
  let ok: string;
  const host = { file: '', dir: '' };
  beforeAll(async () => {
    t = await tierSpool('intake');
    await fixtureBase(t.baseDir, 'extra');
    ok = await fixtureJob(t.root, 'ok', 'ok');
    const q = (f: string): string => path.join(t.queue, f);
    for (const f of ['ok.img', 'other@extra.img', 'nobase@missing.img', '-dash.img', 'ctl\x01.img', 'dup.img', 'dup2.img', 'same.img']) await copyFile(ok, q(f));
    await xz(ok, q('packed.img.xz'));
    await xz(ok, q('same.img.xz'));
    // Not submissions: left where they are.
    for (const f of ['.hidden.img', 'upload.img.part', 'notes.txt']) await copyFile(ok, q(f));
    // Entries that are not plain files of ours, pointing at host files that must stay untouched.
    host.file = path.join(t.root, 'host-secret.img');
    await copyFile(ok, host.file);
    host.dir = path.join(t.root, 'host-dir');
    await mkdir(host.dir);
    await writeFile(path.join(host.dir, 'inside'), 'host data\n');
    await symlink(host.file, q('symlink.img'));
    await link(host.file, q('hardlink.img'));
    await exec('mkfifo', [q('fifo.img')]);
    await mkdir(q('dir.img'));
    await writeFile(q('dir.img/inside'), 'submitted directory\n');
    // Images that are not what a job image must be.
    await writeFile(q('empty.img'), '');
    await writeFile(q('small.img'), Buffer.alloc(4096, 0x41));
    await exec('dd', ['if=/dev/urandom', `of=${q('junk.img')}`, 'bs=64k', 'count=2', 'status=none']);
    await writeFile(q('qcow2.img'), Buffer.concat([Buffer.from('QFI\xfb', 'latin1'), Buffer.alloc(128 * 1024)]));
    const packed = await readFile(await xz(ok, path.join(t.root, 'c.img.xz')));
    for (let i = 100; i < 200 && i < packed.length - 40; i++) packed[i] = packed[i]! ^ 0x5a;
    await writeFile(q('corrupt.img.xz'), packed);
    await writeFile(q('big.img'), '');
    await truncate(q('big.img'), 3 * 2 ** 30);
    // A previous run's results with the same names.
    await writeFile(path.join(t.done, 'dup.json'), '{"previous":true}\n');
    await writeFile(path.join(t.done, 'dup2.log'), 'previous log\n');
    svc = await runOnce(t, ['--concurrency', '2', '--max-image-size', '1G']);
  });

  it('claims *.img and *.img.xz, runs each once; ignores dotfiles, *.part and other names', async () => {
    expect(await ls(t.queue)).toEqual(['.hidden.img', '.running', 'notes.txt', 'upload.img.part']);
    expect((await qemuStarts(t)).length).toBe(9);
    expect(await statusOf(t, 'ok.img')).toMatchObject({ dir: 'done', status: 'succeeded', publishedAs: 'ok' });
    expect(await statusOf(t, 'packed.img.xz')).toMatchObject({ dir: 'done', status: 'succeeded', publishedAs: 'packed' });
  });

  it('NAME@BASE.img runs on that base image; an unknown base is the job\'s problem (rejected)', async () => {
    expect(await statusOf(t, 'other@extra.img')).toMatchObject({ status: 'succeeded', publishedAs: 'other', baseImage: { name: 'extra' } });
    const st = await statusOf(t, 'nobase@missing.img');
    expect(st).toMatchObject({ dir: 'failed', status: 'rejected', publishedAs: 'nobase' });
    expect(st.reason).toMatch(/^the job asks for base image 'missing': base image 'missing' not found/);
  });

  it('names are made safe for done/ and failed/', async () => {
    expect((await statusOf(t, '-dash.img')).publishedAs).toBe('_dash');
    expect((await statusOf(t, 'ctl\x01.img')).publishedAs).toBe('ctl_');
  });

  it('a name already taken becomes NAME-1, whichever of its files exists; two submissions of one name get NAME and NAME-1', async () => {
    expect(await statusOf(t, 'dup.img')).toMatchObject({ publishedAs: 'dup-1' });
    expect(await readFile(path.join(t.done, 'dup.json'), 'utf8')).toBe('{"previous":true}\n');
    expect(await statusOf(t, 'dup2.img')).toMatchObject({ publishedAs: 'dup2-1' });
    expect(await readFile(path.join(t.done, 'dup2.log'), 'utf8')).toBe('previous log\n');
    const same = [await statusOf(t, 'same.img'), await statusOf(t, 'same.img.xz')].map((s) => s.publishedAs).sort();
    expect(same).toEqual(['same', 'same-1']);
    for (const n of same) expect(await ls(t.done)).toEqual(expect.arrayContaining([`${n}.img.xz`, `${n}.json`, `${n}.log`]));
  });

  it('links, hard links, FIFOs and directories are refused by name only: never followed, opened or published', async () => {
    const reasons: Record<string, RegExp> = {
      'symlink.img': /it is a symbolic link, not a regular file; the link was removed from the queue, never followed/,
      'hardlink.img': /it has 2 hard links \(submit a copy, not a link\); this name was unlinked from the queue/,
      'fifo.img': /it is a FIFO, not a regular file; it was removed from the queue without being opened/,
      'dir.img': /it is a directory, not a regular file; moved aside, untouched, to .*\/failed\/\.rejected-[\w-]+\.dir/,
    };
    for (const [f, re] of Object.entries(reasons)) {
      const st = await statusOf(t, f);
      expect(st, f).toMatchObject({ dir: 'failed', status: 'rejected', output: null, accel: null });
      expect(st.reason, f).toMatch(re);
      expect(await ls(t.failed), f).not.toContain(`${st.publishedAs}.img`);
    }
    expect((await readFile(host.file)).equals(await readFile(ok))).toBe(true);
    expect(await readFile(path.join(host.dir, 'inside'), 'utf8')).toBe('host data\n');
    const aside = (await ls(t.failed)).filter((f) => f.startsWith('.rejected-'));
    expect(aside).toHaveLength(1);
    expect(await readFile(path.join(t.failed, aside[0]!, 'inside'), 'utf8')).toBe('submitted directory\n');
  });

  it('images that are not ext2/3/4 filesystems within the limits are rejected before any qemu, kept as evidence', async () => {
    const reasons: Record<string, RegExp> = {
      'empty.img': /it is empty \(0 bytes\)/,
      'small.img': /4096 bytes is too small to hold an ext2\/3\/4 filesystem/,
      'junk.img': /no ext2\/3\/4 superblock/,
      'qcow2.img': /it is a qcow2 image/,
      'big.img': /3\.0 GiB exceeds the 1\.0 GiB limit \(max-image-size\)/,
      'corrupt.img.xz': /input\.img\.xz: corrupt or truncated \.xz: /,
    };
    for (const [f, re] of Object.entries(reasons)) {
      const st = await statusOf(t, f);
      expect(st, f).toMatchObject({ dir: 'failed', status: 'rejected', accel: null, console: null });
      expect(st.reason, f).toMatch(re);
      expect(await ls(t.failed), f).toContain(`${st.publishedAs}.${f.endsWith('.xz') ? 'img.xz' : 'img'}`);
    }
    expect((await qemuStarts(t)).every((m) => m === 'ok')).toBe(true);
  });

  it('every claimed entry has exactly one status; nothing is left claimed', async () => {
    const submitted = (await published(t)).map((s) => s.submitted).filter((x) => x !== undefined).sort(); // dup.json is the previous run's
    expect(submitted).toEqual(['-dash.img', 'big.img', 'corrupt.img.xz', 'ctl\x01.img', 'dir.img', 'dup.img', 'dup2.img', 'empty.img', 'fifo.img',
      'hardlink.img', 'junk.img', 'nobase@missing.img', 'ok.img', 'other@extra.img', 'packed.img.xz', 'qcow2.img', 'same.img', 'same.img.xz',
      'small.img', 'symlink.img']);
    expect(await ls(path.join(t.queue, '.running'))).toEqual([]);
    expect(svc.logged('rejected a queue entry that is not a plain file')).toHaveLength(4);
  });
});

describe('publishing when done/ or failed/ cannot be written', { timeout: 90_000 }, () => {
  /** Put a regular file where `dir` was (writes into it fail with ENOTDIR); returns the undo. */
  async function breakDir(dir: string): Promise<() => Promise<void>> {
    await rename(dir, `${dir}.away`);
    await writeFile(dir, 'not a directory\n');
    return async () => { await rm(dir); await rename(`${dir}.away`, dir); };
  }

  it('a result done/ cannot take is published to failed/ as error, with the submitted input as evidence', async () => {
    const t = await tierSpool('publish-fallback');
    const svc = await startInProcess(t);
    const undo = await breakDir(t.done);
    const ok = await fixtureJob(t.root, 'ok', 'ok');
    await copyFile(ok, path.join(t.queue, '.ok.img.part'));
    await rename(path.join(t.queue, '.ok.img.part'), path.join(t.queue, 'ok.img'));
    await waitFor('the result', async () => (await ls(t.failed)).includes('ok.json'));
    await svc.service.stop('test');
    await undo();
    const st = await statusOf(t, 'ok.img');
    expect(st).toMatchObject({ dir: 'failed', status: 'error', exitCode: 0, output: null });
    expect(st.reason).toMatch(/^could not publish the succeeded result to .*\/done: .*ENOTDIR.*; the submitted input is kept here instead \(the run: the job succeeded\)$/);
    expect((await readFile(path.join(t.failed, 'ok.img'))).equals(await readFile(ok))).toBe(true);
    expect(await ls(t.done)).toEqual([]);
    expect((await ls(t.failed)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('when neither can be written, the job stays claimed with the reason in its lease, and the next start publishes it', async () => {
    const t = await tierSpool('publish-stuck');
    const svc = await startInProcess(t);
    const undo = [await breakDir(t.done), await breakDir(t.failed)];
    await copyFile(await fixtureJob(t.root, 'ok', 'ok'), path.join(t.queue, 'ok.img'));
    await waitFor('the job to be stuck', async () => svc.logged('could not be published').length === 1);
    await svc.service.stop('test');
    for (const u of undo) await u();
    const [id] = await ls(path.join(t.queue, '.running'));
    const lease = JSON.parse(await readFile(path.join(t.queue, '.running', id!, 'lease.json'), 'utf8')) as { lastError: string; requeued: boolean };
    expect(lease.requeued).toBe(true);
    expect(lease.lastError).toMatch(/could not publish the succeeded result .*; publishing that to .*\/failed failed too: .*ENOTDIR/);
    await runOnce(t);
    expect(await statusOf(t, 'ok.img')).toMatchObject({ dir: 'done', status: 'succeeded', attempt: 1 });
    expect(await ls(path.join(t.queue, '.running'))).toEqual([]);
  });
});
