// Source files for the xz tests: data at chosen offsets, holes everywhere else.
import { open } from 'node:fs/promises';

/** Create `p` with each [offset, bytes] piece written in place and the file cut to `size`. */
export async function writeSparse(p: string, pieces: readonly (readonly [number, Buffer])[], size: number): Promise<string> {
  const fh = await open(p, 'w');
  try {
    for (const [off, b] of pieces) await fh.write(b, 0, b.length, off);
    await fh.truncate(size);
  } finally {
    await fh.close();
  }
  return p;
}
