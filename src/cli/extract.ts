// `scripts/extract RESULT OUTDIR [PATH...]`: files out of a result image (.img.xz or raw .img),
// without root and without mounting: streaming xz decompression to a sparse temp file, then
// debugfs confined in a sandbox, with caps on bytes, entries and depth (src/image/extract-tree.ts).
import { mkdir, mkdtemp, open, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { JrError } from '../errors.js';
import { shareDirWithSandbox, shareFileWithSandbox } from '../image/confine.js';
import { extractTree, imageHas, openImage, type ExtractCaps } from '../image/extract-tree.js';
import { decompressFile } from '../xz/decompress.js';
import { parseSize } from '../units.js';
import { isMain, runMain } from './args.js';

const HELP = `Usage: scripts/extract RESULT OUTDIR [PATH...]

Copies files out of a job result: done/NAME.img.xz, failed/NAME.img.xz or a raw NAME.img.
No root and no mount: the .xz is decompressed (streaming, memory-bounded) to a sparse temporary
file and the filesystem is read by debugfs confined in a sandbox (as the unprivileged user
jobrunner-qemu when run as root, no network, only the image visible, CPU/memory/time limits).
Each PATH (absolute, inside the image) is copied to OUTDIR/<basename of PATH>, which must not
exist yet. Default: /output if the image has it, else everything (without lost+found).
Holes stay holes; setuid/setgid bits and owners are not kept; devices, FIFOs and sockets are
skipped. A directory cycle, or a tree past a cap, stops with an error (exit 125).

Options:
  --max-size SIZE   refuse a .xz that decompresses past SIZE (default 64G)
  --max-bytes SIZE  cap on the sum of extracted file sizes (default 16x the image's size, at
                    least 1G; data actually written never exceeds the image's own size)
  --max-files N     cap on extracted entries (default: the image's inode count)
  --max-depth N     cap on directory nesting (default 256)
  --tmpdir DIR      where the decompressed image is kept while extracting (default: $TMPDIR or /tmp)
  -h, --help        this help
`;

/** Entry point of extract; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true, strict: true,
    options: {
      'max-size': { type: 'string', default: '64G' }, 'max-bytes': { type: 'string' }, 'max-files': { type: 'string' },
      'max-depth': { type: 'string' }, tmpdir: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) { process.stdout.write(HELP); return 0; }
  if (positionals.length < 2) throw new JrError('JR_E_USAGE', 'Expected RESULT and OUTDIR (see --help)');
  const cap = parseSize(values['max-size']!);
  if (!cap) throw new JrError('JR_E_USAGE', `Expected --max-size to be a size such as 20G, got ${JSON.stringify(values['max-size'])}`);
  const caps = capsFrom(values);
  const [result, outDir, ...paths] = positionals.map((p, i) => (i < 2 ? path.resolve(p) : p)) as [string, string, ...string[]];

  let tmp: string | null = null;
  try {
    let image = result;
    if (await isXz(result)) {
      tmp = await mkdtemp(path.join(values.tmpdir ?? os.tmpdir(), 'extract-'));
      await shareDirWithSandbox(tmp); // the confined reader must see the decompressed image
      image = path.join(tmp, 'image.img');
      await decompressFile(result, image, { sizeCap: cap });
      await shareFileWithSandbox(image);
    }
    await mkdir(outDir, { recursive: true });
    const img = await openImage(image);
    try {
      const wanted = paths.length > 0 ? paths : (await imageHas(img, '/output')) ? ['/output'] : ['/'];
      let entries = 0;
      const skipped: string[] = [];
      for (const p of wanted) {
        if (!await imageHas(img, p)) throw new JrError('JR_E_USAGE', `${p} does not exist in ${result}`);
        const s = await extractTree(img, p, outDir, caps);
        entries += s.entries;
        skipped.push(...s.skipped);
      }
      if (skipped.length > 0) process.stderr.write(`extract: skipped ${skipped.length} device, FIFO or socket entries: ${skipped.slice(0, 5).join(', ')}\n`);
      const top = await readdir(outDir);
      process.stdout.write(`extracted ${wanted.join(', ')} (${entries} entries below) into ${outDir}: ${top.join(' ')}\n`);
    } finally {
      await img.close();
    }
    return 0;
  } finally {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  }
}

function capsFrom(v: { 'max-bytes'?: string; 'max-files'?: string; 'max-depth'?: string }): Partial<ExtractCaps> {
  const caps: Partial<ExtractCaps> = {};
  if (v['max-bytes'] !== undefined) {
    const n = parseSize(v['max-bytes']);
    if (!n) throw new JrError('JR_E_USAGE', `Expected --max-bytes to be a size such as 2G, got ${JSON.stringify(v['max-bytes'])}`);
    caps.maxBytes = n;
  }
  for (const [flag, key] of [['max-files', 'maxFiles'], ['max-depth', 'maxDepth']] as const) {
    const s = v[flag];
    if (s === undefined) continue;
    if (!/^[1-9]\d*$/.test(s)) throw new JrError('JR_E_USAGE', `Expected --${flag} to be a whole number >= 1, got ${JSON.stringify(s)}`);
    caps[key] = Number(s);
  }
  return caps;
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
