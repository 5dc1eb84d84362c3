// Loop devices: attach a file (optionally scanning its partition table), list partition devices,
// detach. losetup does the ioctls; we verify through sysfs.
import { readFile, readdir, access } from 'node:fs/promises';
import path from 'node:path';
import { run } from '../proc.js';
import { JrError } from '../errors.js';

export interface LoopOptions {
  readOnly?: boolean;
  /** Scan the partition table (-P) so /dev/loopNpM exist. */
  partscan?: boolean;
}

/** Attach `file` to a free loop device; returns e.g. "/dev/loop3". */
export async function attachLoop(file: string, opts: LoopOptions = {}): Promise<string> {
  const args = ['--find', '--show'];
  if (opts.readOnly) args.push('--read-only');
  if (opts.partscan) args.push('--partscan');
  const r = await run('losetup', [...args, '--', file], { errorCode: 'JR_E_PROCESS' });
  const dev = r.stdout.trim();
  if (!/^\/dev\/loop\d+$/.test(dev)) throw new JrError('JR_E_PROCESS', `losetup printed an unexpected device: ${JSON.stringify(dev)}`);
  return dev;
}

/** Partition device paths of a loop device, by partition number. Adds them with partx when the
 *  kernel did not scan the table itself (kernels built without a partition parser do that). */
export async function loopPartitions(dev: string, expected: number[]): Promise<Map<number, string>> {
  const name = path.basename(dev);
  const found = async (): Promise<Map<number, string>> => {
    const m = new Map<number, string>();
    for (const e of await readdir(`/sys/block/${name}`)) {
      const mm = new RegExp(`^${name}p(\\d+)$`).exec(e);
      if (mm) m.set(Number(mm[1]), `/dev/${e}`);
    }
    return m;
  };
  let parts = await found();
  if (expected.some((n) => !parts.has(n))) {
    await run('partx', ['--add', '--', dev], { reject: false });
    parts = await found();
  }
  for (const n of expected) {
    const p = parts.get(n);
    if (!p) throw new JrError('JR_E_PROCESS', `partition ${n} of ${dev} did not appear`);
    // devtmpfs creates the node asynchronously after the kernel registers the partition.
    for (let i = 0; i < 100; i++) {
      try { await access(p); break; } catch { await new Promise((r) => setTimeout(r, 10)); }
    }
  }
  return parts;
}

/** The file a loop device is attached to, or null when it is free. */
export async function loopBackingFile(dev: string): Promise<string | null> {
  try {
    return (await readFile(`/sys/block/${path.basename(dev)}/loop/backing_file`, 'utf8')).trim() || null;
  } catch {
    return null;
  }
}

/** Detach a loop device if it is still attached to `file` (never detach someone else's device). */
export async function detachLoop(dev: string, file: string): Promise<void> {
  const backing = await loopBackingFile(dev);
  if (backing === null || path.resolve(backing) !== path.resolve(file)) return;
  await run('losetup', ['--detach', dev], { errorCode: 'JR_E_PROCESS' });
}
