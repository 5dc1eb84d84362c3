// What is inside an image file: its container format (qemu-img) and, for a raw view, whether it is a
// whole filesystem or a partitioned disk (blkid, partx). Only ever run on operator-owned images:
// format probing of untrusted input is how qemu CVEs happen (see mount.ts).
import { run } from '../proc.js';
import { JrError } from '../errors.js';

/** Container formats we open through qemu-storage-daemon (raw is loop-mounted directly). */
export const FORMATS = ['raw', 'qcow2', 'vmdk', 'vdi', 'vhdx', 'vpc', 'qed', 'qcow'] as const;
export type ImageFormat = (typeof FORMATS)[number];

export interface ImageInfo {
  format: ImageFormat;
  virtualSize: number;
  backing?: string;
}

/** Container format and size of an image, from `qemu-img info` (force-share: it may be in use). */
export async function imageInfo(file: string): Promise<ImageInfo> {
  const r = await run('qemu-img', ['info', '--force-share', '--output=json', '--', file], { errorCode: 'JR_E_BASE_IMAGE' });
  const j = JSON.parse(r.stdout) as { format?: string; 'virtual-size'?: number; 'full-backing-filename'?: string };
  const format = j.format as ImageFormat | undefined;
  if (!format || !(FORMATS as readonly string[]).includes(format)) {
    throw new JrError('JR_E_BASE_IMAGE', `Expected \`${file}\` to be one of ${FORMATS.join(', ')}, got ${j.format ?? 'unknown'}`);
  }
  return { format, virtualSize: j['virtual-size'] ?? 0, ...(j['full-backing-filename'] ? { backing: j['full-backing-filename'] } : {}) };
}

export interface Partition {
  nr: number;
  /** Byte offset and length inside the raw disk. */
  offset: number;
  size: number;
  /** Filesystem type found by blkid, or '' when none (swap counts as a type; callers filter). */
  fstype: string;
  label: string;
  /** MBR type (0x83) or GPT type GUID, lower case. */
  partType: string;
}

export type Layout =
  | { kind: 'filesystem'; fstype: string }
  | { kind: 'partitioned'; table: string; partitions: Partition[] };

/** blkid -p key=value output as a record (exit 2 = nothing found = empty record). */
export async function blkid(file: string, offset?: number, size?: number): Promise<Record<string, string>> {
  const args = ['-p', '-o', 'export'];
  if (offset !== undefined) args.push('-O', String(offset));
  if (size !== undefined) args.push('-S', String(size));
  const r = await run('blkid', [...args, '--', file], { reject: false });
  if (r.exitCode !== 0 && r.exitCode !== 2) {
    throw new JrError('JR_E_BASE_IMAGE', `blkid failed on ${file}: ${r.stderr.trim()}`, { exitCode: r.exitCode });
  }
  const out: Record<string, string> = {};
  for (const line of r.stdout.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

/** Parse `partx -g -b -o NR,START,SIZE,TYPE` output (pure). START is in 512-byte sectors. */
export function parsePartx(text: string): Array<Pick<Partition, 'nr' | 'offset' | 'size' | 'partType'>> {
  return text.split('\n').map((l) => l.trim().split(/\s+/)).filter((f) => f.length >= 3 && /^\d+$/.test(f[0] ?? ''))
    .map((f) => ({ nr: Number(f[0]), offset: Number(f[1]) * 512, size: Number(f[2]), partType: (f[3] ?? '').toLowerCase() }));
}

/** Whole filesystem or partitioned disk? `file` must be a raw view (a raw image or a FUSE export). */
export async function probeLayout(file: string): Promise<Layout> {
  const top = await blkid(file);
  if (top.PTTYPE) {
    const r = await run('partx', ['-g', '-b', '-o', 'NR,START,SIZE,TYPE', '--', file], { errorCode: 'JR_E_BASE_IMAGE' });
    const partitions: Partition[] = [];
    for (const p of parsePartx(r.stdout)) {
      const id = await blkid(file, p.offset, p.size);
      partitions.push({ ...p, fstype: id.TYPE ?? '', label: id.LABEL ?? '' });
    }
    return { kind: 'partitioned', table: top.PTTYPE, partitions };
  }
  if (top.TYPE) return { kind: 'filesystem', fstype: top.TYPE };
  throw new JrError('JR_E_BASE_IMAGE', `Expected \`${file}\` to hold a filesystem or a partition table, got neither (blkid found nothing)`);
}

/** Filesystems worth mounting (not swap, not raid members, not BIOS boot gaps). */
export function isMountableFs(fstype: string): boolean {
  return ['ext2', 'ext3', 'ext4', 'xfs', 'btrfs', 'vfat', 'erofs', 'squashfs'].includes(fstype);
}
