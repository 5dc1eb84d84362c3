// Serving a file with Range support (one range; enough for resumable downloads and `curl -r`).
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { JrError } from '../errors.js';
import type { FastifyReply } from './types.js';

/** Parse a Range header against a file size: [start, end] inclusive, null for the whole file. */
export function parseRange(header: string | undefined, size: number): [number, number] | null {
  if (header === undefined) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) throw new JrError('JR_E_RANGE', `unsupported Range ${JSON.stringify(header.slice(0, 80))} (one bytes=A-B range)`);
  let start: number; let end: number;
  if (m[1] === '') { // suffix: the last N bytes
    start = Math.max(0, size - Number(m[2]));
    end = size - 1;
  } else { start = Number(m[1]); end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1); }
  if (start > end || start >= size) throw new JrError('JR_E_RANGE', `Range ${header} is outside the ${size}-byte file`);
  return [start, end];
}

/** Send `file` (opened once: what is measured is what is sent), honouring Range. */
export async function sendFile(reply: FastifyReply, file: string, type: string, range: string | undefined, downloadName?: string): Promise<FastifyReply> {
  const fh = await open(file, 'r').catch(() => { throw new JrError('JR_E_NOT_FOUND', 'the file is not there (any more)'); });
  try {
    const { size } = await fh.stat();
    let r: [number, number] | null;
    try { r = parseRange(range, size); } catch (e) { void reply.header('content-range', `bytes */${size}`); throw e; }
    void reply.header('accept-ranges', 'bytes').type(type);
    if (downloadName) void reply.header('content-disposition', `attachment; filename="${downloadName.replace(/[^A-Za-z0-9._+-]/g, '_')}"`);
    if (size === 0) { await fh.close(); return reply.header('content-length', '0').send(''); }
    const [start, end] = r ?? [0, size - 1];
    if (r) void reply.code(206).header('content-range', `bytes ${start}-${end}/${size}`);
    void reply.header('content-length', String(end - start + 1));
    const stream = createReadStream('', { fd: fh, start, end, autoClose: true });
    return reply.send(stream);
  } catch (e) {
    await fh.close().catch(() => undefined);
    throw e;
  }
}
