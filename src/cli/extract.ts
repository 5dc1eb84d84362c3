// `scripts/extract RESULT OUTDIR [PATH...]`: files out of a result image (.img.xz or raw .img),
// without root and without mounting: streaming xz decompression to a sparse temp file, then
// e2fsprogs userspace (debugfs). Names in the image are untrusted and checked before dumping.
import { mkdir, mkdtemp, open, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { JrError } from '../errors.js';
import { checkTreeNames, dumpTree, existsInImage, listDir } from '../image/ext.js';
import { decompressFile } from '../xz/decompress.js';
import { parseSize } from '../units.js';
import { isMain, runMain } from './args.js';

const HELP = `Usage: scripts/extract RESULT OUTDIR [PATH...]

Copies files out of a job result: done/NAME.img.xz, failed/NAME.img.xz or a raw NAME.img.
No root and no mount: the .xz is decompressed (streaming, memory-bounded) to a sparse temporary
file and the files are read with debugfs. Each PATH (absolute, inside the image) is copied to
OUTDIR/<basename of PATH>. Default: /output if the image has it, else everything.

Options:
  --max-size SIZE   refuse a .xz that decompresses past SIZE (default 64G)
  --tmpdir DIR      where the decompressed image is kept while extracting (default: $TMPDIR or /tmp)
  -h, --help        this help
`;

/** Entry point of extract; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true, strict: true,
    options: { 'max-size': { type: 'string', default: '64G' }, tmpdir: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) { process.stdout.write(HELP); return 0; }
  if (positionals.length < 2) throw new JrError('JR_E_USAGE', 'Expected RESULT and OUTDIR (see --help)');
  const cap = parseSize(values['max-size']!);
  if (!cap) throw new JrError('JR_E_USAGE', `Expected --max-size to be a size such as 20G, got ${JSON.stringify(values['max-size'])}`);
  const [result, outDir, ...paths] = positionals.map((p, i) => (i < 2 ? path.resolve(p) : p)) as [string, string, ...string[]];
  if (/["\\\n\r]/.test(outDir)) throw new JrError('JR_E_USAGE', 'OUTDIR must not contain quotes, backslashes or newlines');

  let tmp: string | null = null;
  try {
    let image = result;
    if (await isXz(result)) {
      tmp = await mkdtemp(path.join(values.tmpdir ?? os.tmpdir(), 'extract-'));
      image = path.join(tmp, 'image.img');
      await decompressFile(result, image, { sizeCap: cap });
    }
    await mkdir(outDir, { recursive: true });
    let wanted = paths;
    if (wanted.length === 0) {
      if (await existsInImage(image, '/output')) wanted = ['/output'];
      else wanted = ((await listDir(image, '/')) ?? []).filter((e) => e.name !== 'lost+found').map((e) => `/${e.name}`);
    }
    let files = 0;
    for (const p of wanted) {
      if (!await existsInImage(image, p)) throw new JrError('JR_E_USAGE', `${p} does not exist in ${result}`);
      files += await checkTreeNames(image, p);
      await dumpTree(image, p, outDir);
    }
    const top = await readdir(outDir);
    process.stdout.write(`extracted ${wanted.join(', ')} (${files} entries below) into ${outDir}: ${top.join(' ')}\n`);
    return 0;
  } finally {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  }
}

async function isXz(file: string): Promise<boolean> {
  const fh = await open(file, 'r').catch((e: NodeJS.ErrnoException) => {
    throw new JrError('JR_E_USAGE', `cannot open ${file}: ${e.code}`);
  });
  try {
    const head = Buffer.alloc(6);
    await fh.read(head, 0, 6, 0);
    return head.equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]));
  } finally {
    await fh.close();
  }
}

if (isMain(import.meta.url)) runMain('extract', main);
