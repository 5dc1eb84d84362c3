// `scripts/mkjob-deb FILE.dsc [-o OUT.img]`: a job image that builds a Debian source package.
// The .dsc's Build-Depends(-Arch/-Indep) and Build-Conflicts become the job's manifest (resolved
// by the service with apt, installed into a derived layer); the job runs dpkg-source -x and
// dpkg-buildpackage -us -uc -b in the guest and leaves .deb/.buildinfo/.changes in /job/output.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { JrError } from '../errors.js';
import { makeExtImage, treeSize } from '../image/ext.js';
import { parseDsc } from '../deps/dsc.js';
import { MANIFEST_MAX_PACKAGES } from '../deps/manifest.js';
import { formatBytes, parseSize } from '../units.js';
import { isMain, runMain } from './args.js';

const HELP = `Usage: scripts/mkjob-deb FILE.dsc [-o OUT.img] [--extra SIZE] [--publish image|output] [--force]

Makes a job image that builds the Debian source package FILE.dsc (its files must sit beside it,
as apt-get source --download-only or dget -d leave them; their sha256 is checked here):
  jobrunner.json  packages = Build-Depends, -Arch, -Indep; conflicts = Build-Conflicts (all three)
  src/            the .dsc and its files
  bin/construir   dpkg-source -x, then dpkg-buildpackage -us -uc -b; the .deb, .buildinfo and
                  .changes land in /job/output, the build log in the console log
Submit it like any job (cp OUT.img queue/); the service resolves the build dependencies with apt.

Options:
  -o, --output OUT   image to write (default ./SOURCE_VERSION.img)
  --extra SIZE       free space for the build (default 2G; sparse, costs no disk)
  --publish WHAT     "output" (default): done/ holds NAME.output.tar.xz; "image": the whole image
  --force            replace OUT if it exists
  -h, --help         this help
`;

// Runs in the guest as /job/bin/construir. Builds on the job disk (/tmp is a small tmpfs).
const BUILD_SCRIPT = (dsc: string): string => `#!/bin/sh
set -eu
cd /job
rm -rf build && mkdir -p build output
dpkg-source --no-check -x "src/${dsc}" build/src
cd build/src
dpkg-buildpackage -us -uc -b
cd ..
cp -v ./*.deb ./*.buildinfo ./*.changes /job/output/
`;

async function sha256Of(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(file)) h.update(c as Buffer);
  return h.digest('hex');
}

/** Entry point of mkjob-deb; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, strict: true, options: {
    output: { type: 'string', short: 'o' }, extra: { type: 'string' }, publish: { type: 'string', default: 'output' },
    force: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) { process.stdout.write(HELP); return 0; }
  if (positionals.length !== 1 || !positionals[0]!.endsWith('.dsc')) throw new JrError('JR_E_USAGE', 'Expected one FILE.dsc (see --help)');
  if (values.publish !== 'output' && values.publish !== 'image') throw new JrError('JR_E_USAGE', `Expected --publish to be output or image, got ${JSON.stringify(values.publish)}`);
  const extra = parseSize(values.extra ?? '2G');
  if (!extra) throw new JrError('JR_E_USAGE', `Expected --extra to be a size such as 2G, got ${JSON.stringify(values.extra)}`);
  const dscPath = path.resolve(positionals[0]!);
  const dsc = parseDsc(await readFile(dscPath, 'utf8'));
  if (dsc.buildDepends.length + dsc.buildConflicts.length > MANIFEST_MAX_PACKAGES) throw new JrError('JR_E_INPUT', `.dsc: more than ${MANIFEST_MAX_PACKAGES} build relations`);
  const out = path.resolve(values.output ?? `${dsc.source}_${dsc.version.replace(/^\d+:/, '')}.img`);
  if (!values.force && await stat(out).catch(() => null)) throw new JrError('JR_E_USAGE', `${out} already exists (use --force to replace it)`);

  const tmp = await mkdtemp(path.join(os.tmpdir(), 'mkjob-deb-'));
  try {
    await mkdir(path.join(tmp, 'src'), { recursive: true });
    await mkdir(path.join(tmp, 'bin'));
    await copyFile(dscPath, path.join(tmp, 'src', path.basename(dscPath)));
    for (const f of dsc.files) {
      const from = path.join(path.dirname(dscPath), f.name);
      const st = await stat(from).catch(() => null);
      if (!st?.isFile()) throw new JrError('JR_E_INPUT', `${f.name} (named by the .dsc) is not beside it in ${path.dirname(dscPath)}`);
      if (st.size !== f.size || await sha256Of(from) !== f.sha256) throw new JrError('JR_E_INPUT', `${f.name} does not match the .dsc's Checksums-Sha256`);
      await copyFile(from, path.join(tmp, 'src', f.name));
    }
    // build-essential is what every Debian build may assume (policy 4.2); usually in the base already.
    const manifest = { packages: ['build-essential', 'dpkg-dev', ...dsc.buildDepends], conflicts: dsc.buildConflicts, publish: values.publish };
    await writeFile(path.join(tmp, 'jobrunner.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    await writeFile(path.join(tmp, 'bin', 'construir'), BUILD_SCRIPT(path.basename(dscPath)), { mode: 0o755 });
    const content = await treeSize(tmp);
    const size = Math.ceil(content.bytes * 1.15) + 16 * 1024 * 1024 + extra;
    const partial = path.join(path.dirname(out), `.${path.basename(out)}.${process.pid}.part`);
    await makeExtImage(tmp, partial, size, 'ext4');
    await rename(partial, out);
    process.stdout.write(`${out}: builds ${dsc.source} ${dsc.version}; build-depends: ${dsc.buildDepends.join(', ') || '(none)'}; ${formatBytes(size)} sparse\n`);
    return 0;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) runMain('mkjob-deb', main);
