// What an .xz file's indexes declare (`xz --robot --list`): read from the end of the file, no
// decoding. Only a claim until the blocks are decoded and checked against it (xz -t / -d do that).
import { JrError } from '../errors.js';
import { startXz, waitXz } from './xzproc.js';

export interface XzListing { streams: number; blocks: number; compressedBytes: number; uncompressedBytes: number }

/** Parse the `totals` line of `xz --robot --list` output. */
export function parseRobotList(out: string, file: string): XzListing {
  const line = out.split('\n').find((l) => l.startsWith('totals\t'));
  const f = line?.split('\t') ?? [];
  const nums = [f[1], f[2], f[3], f[4]].map((s) => (s !== undefined && /^\d+$/.test(s) ? Number(s) : NaN));
  if (!nums.every((x) => Number.isSafeInteger(x))) {
    throw new JrError('JR_E_XZ', `${file}: unexpected \`xz --robot --list\` output: ${JSON.stringify(out.slice(0, 200))}`);
  }
  const [streams, blocks, compressedBytes, uncompressedBytes] = nums as [number, number, number, number];
  return { streams, blocks, compressedBytes, uncompressedBytes };
}

/** The sizes declared by `file`'s stream indexes; throws JR_E_XZ if they cannot be read. */
export async function listXz(file: string): Promise<XzListing> {
  const p = startXz(['--robot', '--list', '--format=xz', '--', file]);
  let out = '';
  p.child.stdout?.setEncoding('utf8');
  p.child.stdout?.on('data', (s: string) => { if (out.length < 1 << 20) out += s; });
  await waitXz(p, `${file}: cannot read the .xz index (corrupt, truncated or not .xz)`, file);
  return parseRobotList(out, file);
}
