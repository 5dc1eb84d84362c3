// Result images a hostile job could leave behind (a job is root on its own disk and can write any
// bytes to it), built here with mke2fs -d and `debugfs -w` requests (or a byte patch where debugfs
// refuses): each one attacks the host-side reader, scripts/extract.
import { execFile } from 'node:child_process';
import { mkdir, open, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);
const ENV = { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` };

export interface Crafted {
  name: string;
  /** What the attack does, for the test title. */
  what: string;
  image: string;
  /** Extra scripts/extract arguments (caps). */
  args: string[];
  /** The stderr that must explain the refusal (null: extraction must succeed). */
  refusal: RegExp | null;
  /** Disk the output may take before the refusal (default 4 MiB). */
  maxDisk?: number;
}

/** mke2fs -d TREE, then each debugfs -w request in order (debugfs must not complain). */
async function craft(work: string, name: string, files: Record<string, string>, requests: string[], mkfs: string[] = ['-t', 'ext4']): Promise<string> {
  const tree = path.join(work, `${name}.tree`);
  await mkdir(path.join(tree, 'output'), { recursive: true });
  for (const [rel, body] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(tree, rel)), { recursive: true });
    await writeFile(path.join(tree, rel), body);
  }
  const image = path.join(work, `${name}.img`);
  await exec('mke2fs', ['-q', '-F', ...mkfs, '-d', tree, '-E', 'root_owner=0:0', image, '16M'], { env: ENV });
  if (requests.length > 0) {
    const script = path.join(work, `${name}.debugfs`);
    await writeFile(script, requests.join('\n') + '\n');
    const r = await exec('debugfs', ['-w', '-f', script, image], { env: ENV, maxBuffer: 64 << 20 });
    const complaints = r.stderr.split('\n').filter((l) => l.trim() && !/^debugfs \d/.test(l) && !/^Allocated inode/.test(l));
    if (complaints.length > 0) throw new Error(`crafting ${name}: ${complaints.slice(0, 3).join('; ')}`);
  }
  return image;
}

/** Replace the first occurrence of `from` in the file with `to` (same length). */
async function patch(file: string, from: Buffer, to: Buffer): Promise<void> {
  const data = await readFile(file);
  const at = data.indexOf(from);
  if (at < 0 || from.length !== to.length) throw new Error(`patch: ${from.toString('hex')} not found in ${file}`);
  const fh = await open(file, 'r+');
  try { await fh.write(to, 0, to.length, at); } finally { await fh.close(); }
}

/** Every crafted image; `hostDir` is a host directory a symlink in one of them points at. */
export async function craftAll(work: string, hostDir: string): Promise<Crafted[]> {
  const out: Crafted[] = [];
  const add = (c: Crafted): void => { out.push(c); };

  add({ name: 'cycle', what: 'a directory linked into its own child (a cycle: rdump never ended)', args: [],
    image: await craft(work, 'cycle', { 'output/a/b/f': 'x\n' }, ['ln /output/a /output/a/b/loop']),
    refusal: /directory tree has a cycle .*\/output\/a\/b\/loop is directory inode \d+ again/ });

  // As the service publishes it (done/NAME.img.xz): decompressed to a temp file first.
  await exec('xz', ['-T1', '-0', '-k', path.join(work, 'cycle.img')]);
  add({ name: 'cycle-xz', what: 'the cycle as a published .img.xz', args: [], image: path.join(work, 'cycle.img.xz'),
    refusal: /directory tree has a cycle/ });

  add({ name: 'self', what: '/output linked into itself', args: [],
    image: await craft(work, 'self', {}, ['ln /output /output/again']),
    refusal: /cycle .*\/output\/again/ });

  add({ name: 'balloon', what: 'an inode claiming 1 TiB (rdump wrote zeros densely to the host disk)', args: [],
    image: await craft(work, 'balloon', { 'output/huge': 'tiny\n' }, ['sif /output/huge size 1099511627776']),
    refusal: /files add up to more than 1073741824 bytes at \/output\/huge \(it claims 1099511627776/ });

  add({ name: 'balloon-allowed', what: 'the same 1 TiB inode with --max-bytes 2T: written as a hole, not densely', args: ['--max-bytes', '2T'],
    image: path.join(work, 'balloon.img'), refusal: null });

  // 400 files that all claim the same 12 data blocks (48 KiB): 19 MB of data out of a 16 MiB image.
  const shared = await craft(work, 'shared', { 'output/data': 'D'.repeat(48 * 1024) }, [], ['-t', 'ext2', '-b', '4096']);
  const blocks = (await exec('debugfs', ['-R', 'blocks /output/data', shared], { env: ENV })).stdout.trim().split(/\s+/).slice(0, 12);
  const reqs: string[] = [];
  for (let i = 0; i < 400; i++) {
    reqs.push(`write /dev/null /output/c${i}`, `sif /output/c${i} size 49152`, ...blocks.map((b, j) => `sif /output/c${i} block[${j}] ${b}`));
  }
  const script = path.join(work, 'shared.debugfs');
  await writeFile(script, reqs.join('\n') + '\n');
  await exec('debugfs', ['-w', '-f', script, shared], { env: ENV, maxBuffer: 64 << 20 });
  add({ name: 'shared', what: '400 inodes sharing one 48 KiB run of blocks (more data than the image holds)', args: [],
    image: shared, refusal: /the data written passes the image's own size \(16777216 bytes\): its files share blocks/,
    maxDisk: 16 * 1024 * 1024 + (1 << 20) }); // bounded by the image's own size, by design

  const deep = ['mkdir /output/d'];
  for (let i = 2, p = '/output/d'; i <= 300; i++) { p += '/d'; deep.push(`mkdir ${p}`); }
  add({ name: 'deep', what: '300 nested directories', args: [],
    image: await craft(work, 'deep', {}, deep), refusal: /directories nest deeper than 256 levels/ });

  // 20 nested 250-character names: 5000 bytes of path, past the host's PATH_MAX (4096).
  const long = [];
  for (let i = 0, p = '/output'; i < 20; i++) { p += `/${String(i).padStart(3, '0')}${'n'.repeat(247)}`; long.push(`mkdir ${p}`); }
  add({ name: 'long-path', what: 'nested names longer together than PATH_MAX', args: [],
    image: await craft(work, 'long-path', {}, long), refusal: /a path in the image is too long for the host/ });

  // 64 inodes in the filesystem, 3000 names for one of them: more entries than the image can hold honestly.
  // (debugfs ln does not grow a directory: `expand` adds a block to it every 50 names, without dir_index.)
  const links = Array.from({ length: 3000 }, (_, i) => (i % 50 === 0 ? `expand /output\nln /output/f /output/l${i}` : `ln /output/f /output/l${i}`));
  add({ name: 'wide', what: '3000 hard links in a filesystem of 64 inodes', args: [],
    image: await craft(work, 'wide', { 'output/f': 'x\n' }, links, ['-t', 'ext4', '-N', '64', '-O', '^dir_index']), refusal: /more than \d+ entries below \/output/ });

  add({ name: 'outside', what: 'a file whose block map points past the end of the image', args: [],
    image: await craft(work, 'outside', { 'output/f': 'data\n' }, ['sif /output/f block[0] 4000000000'], ['-t', 'ext2']),
    refusal: /maps blocks 4000000000-4000000000, outside the \d+-byte image/ });

  // A symlink to a host directory, and a directory of the same name holding a file: a reader that
  // merged or followed would write host-dir/pwned. debugfs refuses duplicate names, so patch one in.
  const dup = await craft(work, 'dup', { 'output/zz/pwned': 'PWNED\n' }, [`symlink /output/yy ${hostDir}`], ['-t', 'ext4', '-O', '^metadata_csum,^dir_index']);
  await patch(dup, Buffer.from('\x02\x02zz'), Buffer.from('\x02\x02yy')); // name_len 2, type dir, "zz" -> "yy"
  add({ name: 'dup', what: 'a symlink to a host directory and a directory of the same name', args: [], image: dup,
    refusal: /\/output\/yy already exists \(a name twice in one directory/ });

  add({ name: 'setuid', what: 'a setuid-root program in the output', args: [],
    image: await craft(work, 'setuid', { 'output/tool': '#!/bin/sh\n' }, ['sif /output/tool mode 0104755']), refusal: null });
  return out;
}
