// Uploads through the API end as a file renamed into queue/, like any other submission, so intake,
// claims, recovery and publishing stay as they are. What the file name cannot carry safely (the id
// given at upload, the owning token) lives in a record in queue/.uploads/, a directory only the
// service may write: a hostile file named like an upload gets its id only when the record names it
// AND its inode is the one the upload wrote, so ids cannot be forged by naming a file.
import { constants } from 'node:fs';
import { lstat, mkdir, open, readdir, readFile, rename, rm, statfs } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { JrError } from '../errors.js';
import { fsyncPath, writeFileAtomic } from '../fsutil.js';
import { isJobId, newJobId } from '../spool/claim.js';

export const UPLOADS = '.uploads';

export interface UploadRecord {
  id: string;
  /** Result name (validated by the API). */
  name: string;
  /** Token name that uploaded it (owns cancel). */
  owner: string;
  /** Its name in queue/. */
  file: string;
  ino: number;
  dev: number;
  bytes: number;
  compressed: boolean;
  uploadedAt: string;
  /** Set once the service claimed the file under this id (a record is used once). */
  claimedAt?: string;
}

export interface UploadLimits {
  /** Bytes the body may have (declared or streamed). */
  cap: number;
  /** Free bytes that must remain on the queue's filesystem after the upload. */
  reserve: number;
}

const XZ_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);
// Socket chunks are gathered into batches, one written while the next fills: per upload at most two
// batches are held, each passing its size by less than a chunk (64 KiB). A batch is 1 MiB when the
// sizes of all uploads' batches (written or filling) leave room for it under BATCH_BUDGET (four
// uploads at full size), else 256 KiB: fewer, larger writes cost less CPU per byte, and memory stays
// bounded by 8 MiB + 2 x (256 + 64) KiB per upload (50 uploads: 39 MiB at worst, 31 MiB once the
// 1 MiB batches are written; 256 KiB batches alone held the same 31 MiB).
const LARGE_BATCH = 1024 * 1024;
const WRITE_BATCH = 256 * 1024;
const BATCH_BUDGET = 8 * 1024 * 1024;
let batched = 0; // sizes of all uploads' batches being filled or written

let batchedPeak = 0;
/** Bytes the uploads' write batches hold now (their sizes; see BATCH_BUDGET). */
export function uploadBatchBytes(): number { return batched; }
/** The most `uploadBatchBytes()` has been since the last call (what the budget is checked by). */
export function uploadBatchPeak(): number { const p = batchedPeak; batchedPeak = batched; return p; }
// The page cache holds a whole upload before anything reaches the disk (the kernel's background
// writeback starts only at a share of RAM), so a final fsync alone writes it all after the last
// byte arrived. A datasync every so often (never two at once) writes back while the body is still
// arriving, and the final fsync has little left to do.
const SYNC_EVERY = 32 * 1024 * 1024;
// Node's HTTP parser copies each piece of a body (up to 64 KiB) into a fresh Buffer, and V8 counts
// those bytes as old-generation allocation until a GC frees them. After a full GC it leaves about
// max(live heap x factor, live + 8 MiB) of headroom, the factor near its minimum while allocation
// runs this fast: a 1 GiB upload set off a full mark-compact every ~30 MB (~35 of them), about half
// the service's CPU for the upload (bench/api: ~2.8 s -> ~1.3 s of CPU per GiB). While a large body
// (past GC_HEADROOM_AFTER) is being received the factor is pinned at 4 (V8's own upper bound), so
// the young-generation GCs, which run every few tens of MiB of new buffers, free the chunks before a
// full GC is due; V8 picks the factor again once the last such upload ends. Small bodies (a few full
// GCs at most) leave the heap as it was, so many of them at once do not grow it. The flag is only
// read when a GC sets the next limit.
const GC_HEADROOM_PERCENT = 300;
const GC_HEADROOM_AFTER = 32 * 1024 * 1024;
let receiving = 0;
function receivingUploads(delta: 1 | -1): void {
  const was = receiving;
  receiving += delta;
  if ((was === 0) !== (receiving === 0)) setFlagsFromString(`--heap-growing-percent=${receiving > 0 ? GC_HEADROOM_PERCENT : 0}`);
}

const EXT_MAGIC_AT = 1080; // s_magic of the ext2/3/4 superblock (at 1024 + 56), 0xEF53 little-endian

/** Queue file name of an upload: NAME~ID.img[.xz] (the id keeps two uploads of one name apart). */
export function uploadFileName(name: string, id: string, compressed: boolean): string {
  return `${name}~${id}.img${compressed ? '.xz' : ''}`;
}

/** The id an upload's queue file name claims to carry (unverified), or null. */
export function idInFileName(file: string): string | null {
  const m = /~([0-9a-z-]+)\.img(\.xz)?$/.exec(file);
  return m && isJobId(m[1]!) ? m[1]! : null;
}

/** Records of uploads, in queue/.uploads (created and checked by `open`). */
export class Uploads {
  readonly dir: string;
  constructor(private readonly queue: string) { this.dir = path.join(queue, UPLOADS); }

  /** True once queue/.uploads is known to be ours; records are read only from a directory we checked. */
  private checked = false;

  /**
   * Check queue/.uploads, refusing one a submitter made (it must be ours and not writable by
   * others). `create` makes it (the first upload does): a service that never receives an upload
   * leaves queue/ as it found it.
   */
  async open(create = true): Promise<void> {
    if (this.checked) return;
    if (create) await mkdir(this.dir, { mode: 0o755 }).catch((e: NodeJS.ErrnoException) => { if (e.code !== 'EEXIST') throw e; });
    const st = await lstat(this.dir).catch((e: NodeJS.ErrnoException) => { if (e.code === 'ENOENT' && !create) return null; throw e; });
    if (!st) return;
    const uid = process.getuid?.() ?? st.uid;
    if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o022) !== 0) {
      throw new JrError('JR_E_CONFIG', `${this.dir} must be a directory owned by this service and writable only by it; move it away and restart`);
    }
    this.checked = true;
  }

  /** The record of upload `id`, or null. */
  async get(id: string): Promise<UploadRecord | null> {
    if (!isJobId(id) || !this.checked) return null;
    try { return JSON.parse(await readFile(path.join(this.dir, `${id}.json`), 'utf8')) as UploadRecord; } catch { return null; }
  }

  /** All records (for listings by owner). */
  async all(): Promise<UploadRecord[]> {
    const out: UploadRecord[] = [];
    if (!this.checked) return out;
    for (const f of await readdir(this.dir).catch(() => [] as string[])) {
      if (!f.endsWith('.json') || f.startsWith('.')) continue;
      const r = await this.get(f.slice(0, -5));
      if (r) out.push(r);
    }
    return out;
  }

  /**
   * The unused record that queue/`file` is, checked by inode (the upload's own bytes), or null.
   * The caller claims with the record's id and name, then calls `confirm` on the claimed file.
   */
  async match(file: string): Promise<UploadRecord | null> {
    const id = idInFileName(file);
    const rec = id ? await this.get(id) : null;
    if (!rec || rec.claimedAt || rec.file !== file) return null;
    const st = await lstat(path.join(this.queue, file)).catch(() => null);
    return st?.isFile() && st.ino === rec.ino && st.dev === rec.dev ? rec : null;
  }

  /** After the claim: true (and the record marked used) when the claimed entry is still the upload. */
  async confirm(rec: UploadRecord, claimedInput: string): Promise<boolean> {
    const st = await lstat(claimedInput).catch(() => null);
    if (!st?.isFile() || st.ino !== rec.ino || st.dev !== rec.dev) return false;
    await writeFileAtomic(path.join(this.dir, `${rec.id}.json`), JSON.stringify({ ...rec, claimedAt: new Date().toISOString() }) + '\n');
    return true;
  }

  /** Refuse before reading a byte: declared size over the cap (413) or over the free space (507). */
  async precheck(declared: number | null, limits: UploadLimits): Promise<void> {
    if (declared !== null && declared > limits.cap) {
      throw new JrError('JR_E_TOO_LARGE', `the image is ${declared} bytes; at most ${limits.cap} are accepted`);
    }
    const fs = await statfs(this.queue);
    const free = fs.bavail * fs.bsize;
    if (free - (declared ?? 0) < limits.reserve) {
      throw new JrError('JR_E_NO_SPACE', `not enough free space in the queue (${free} bytes free, ${limits.reserve} kept in reserve)`);
    }
  }

  /**
   * Stream `body` into queue/ as upload NAME: a dotfile temp (ignored by intake), fsynced, its
   * record written, then renamed in. A body that ends early, passes the cap or is neither an ext
   * image nor xz leaves nothing behind. `complete` tells a whole body from a cut-off one.
   */
  async receive(body: Readable, o: {
    name: string; owner: string; limits: UploadLimits; declared: number | null; complete: () => boolean; onBytes?: (n: number) => void;
  }): Promise<UploadRecord> {
    await this.open(true);
    const id = newJobId();
    const tmp = path.join(this.queue, `.upload-${id}.part`);
    const recFile = path.join(this.dir, `${id}.json`);
    const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
    let ok = false;
    let reserved = 0; // the filling batch's size, counted in `batched` until it is written
    let large = false; // counted in `receiving`
    try {
      let bytes = 0;
      let head = Buffer.alloc(0);
      // Socket chunks (~64 KiB) are gathered into writev batches (see LARGE_BATCH), and the next
      // batch is read while the last one is written: one write per chunk, awaited, ran at 40% of cp's speed.
      let batch: Buffer[] = [];
      let batchBytes = 0;
      const nextBatch = (): void => {
        reserved = batched + LARGE_BATCH <= BATCH_BUDGET ? LARGE_BATCH : WRITE_BATCH;
        batched += reserved;
        if (batched > batchedPeak) batchedPeak = batched;
      };
      nextBatch();
      let writing: Promise<void> = Promise.resolve();
      let syncing: Promise<void> | null = null;
      // Linux reports a writeback error (EIO) to an open file once, then marks the pages clean: a
      // failing datasync here would not fail the final fsync again, and a damaged upload would be
      // acknowledged. The first such error is kept and fails the upload.
      let syncError: unknown = null;
      let unsynced = 0;
      const flush = async (bufs: Buffer[], n: number, size: number): Promise<void> => {
        try {
          const { bytesWritten } = await fh.writev(bufs);
          if (bytesWritten !== n) throw new JrError('JR_E_NO_SPACE', `short write to the queue (${bytesWritten} of ${n} bytes): disk full?`);
        } finally {
          batched -= size;
        }
      };
      try {
        for await (const chunk of body as AsyncIterable<Buffer>) {
          bytes += chunk.length;
          o.onBytes?.(chunk.length);
          if (bytes > o.limits.cap) throw new JrError('JR_E_TOO_LARGE', `the image passed ${o.limits.cap} bytes, the most accepted`);
          if (head.length < EXT_MAGIC_AT + 2) head = Buffer.concat([head, chunk.subarray(0, EXT_MAGIC_AT + 2 - head.length)]);
          if (!large && bytes > GC_HEADROOM_AFTER) { large = true; receivingUploads(1); }
          batch.push(chunk);
          batchBytes += chunk.length;
          if (batchBytes >= reserved) {
            await writing;
            writing = flush(batch, batchBytes, reserved);
            writing.catch(() => undefined); // handled when awaited; must not count as unhandled meanwhile
            unsynced += batchBytes;
            batch = []; batchBytes = 0;
            nextBatch();
            if (unsynced >= SYNC_EVERY && syncing === null) {
              unsynced = 0;
              const s = writing.then(() => fh.datasync()).finally(() => { syncing = null; });
              s.catch((e: unknown) => { syncError ??= e; });
              syncing = s;
            }
          }
        }
      } finally {
        await writing.catch(() => undefined); // never leave a write running on a handle we close
        await (syncing as Promise<void> | null)?.catch(() => undefined);
      }
      await writing;
      const last = reserved;
      reserved = 0; // from here flush counts the last batch out
      if (batchBytes > 0) await flush(batch, batchBytes, last); else batched -= last;
      if (!o.complete() || (o.declared !== null && bytes !== o.declared)) {
        throw new JrError('JR_E_INPUT', `the upload ended early (${bytes} of ${o.declared ?? '?'} bytes)`);
      }
      const compressed = head.subarray(0, 6).equals(XZ_MAGIC);
      const ext = head.length >= EXT_MAGIC_AT + 2 && head.readUInt16LE(EXT_MAGIC_AT) === 0xef53;
      if (!compressed && !ext) throw new JrError('JR_E_INPUT', 'the body is neither an ext2/3/4 image nor xz-compressed (.img or .img.xz)');
      if (syncError !== null) throw new JrError('JR_E_NO_SPACE', `the upload could not be written to the queue's disk: ${(syncError as Error).message}`, { cause: syncError });
      await fh.sync();
      const st = await fh.stat();
      const file = uploadFileName(o.name, id, compressed);
      const rec: UploadRecord = { id, name: o.name, owner: o.owner, file, ino: st.ino, dev: st.dev, bytes, compressed, uploadedAt: new Date().toISOString() };
      await fh.close();
      // The record first: once the file is in queue/ it may be claimed, and the claim reads it.
      await writeFileAtomic(recFile, JSON.stringify(rec) + '\n');
      const dest = path.join(this.queue, file);
      await rename(tmp, dest);
      await fsyncPath(this.queue).catch(async (e: unknown) => {
        // The rename is not durable, so the upload is not acknowledged: take the file back out of
        // queue/ (the finally below removes it and the record). If intake has claimed it already
        // (or it cannot be moved back), it is a job now, with this record: acknowledge it rather
        // than leave a job nobody was told about.
        if (await rename(dest, tmp).then(() => true, () => false)) throw e;
      });
      ok = true;
      return rec;
    } finally {
      batched -= reserved; // a batch never written (the body failed)
      if (large) receivingUploads(-1);
      await fh.close().catch(() => undefined);
      if (!ok) {
        await rm(tmp, { force: true });
        await rm(recFile, { force: true });
      }
    }
  }

  /** Remove temp uploads a previous run left (the service holds the spool lock: none is live). */
  async sweep(): Promise<number> {
    let n = 0;
    for (const f of await readdir(this.queue).catch(() => [] as string[])) {
      if (/^\.upload-[0-9a-z-]+\.part$/.test(f)) { await rm(path.join(this.queue, f), { force: true }); n++; }
    }
    return n;
  }
}
