// sha256 of a file, streamed (inputs may be many GiB; memory stays flat).
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';

/** Hex sha256 of the file at `p`. */
export async function sha256File(p: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(p, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return h.digest('hex');
}
