// The tests' orphan check must see a qemu that holds spool files only through inherited fds
// (as ours does): a check by command line alone would pass with an orphan running.
import { spawn } from 'node:child_process';
import { mkdir, open, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { qemuProcessesFor, scratch } from '../helpers.js';

describe('qemu orphan detection used by the e2e tests', () => {
  it('finds a qemu by the spool file it holds open, not by its command line', async () => {
    const root = await scratch('orphan');
    const file = path.join(root, '.running', 'id', 'work.img');
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, 'x');
    const fh = await open(file, 'r+');
    const q = spawn('qemu-system-x86_64', ['-nodefaults', '-display', 'none', '-machine', 'none', '-S'], { stdio: ['ignore', 'ignore', 'ignore', fh.fd] });
    await fh.close();
    try {
      await new Promise((r) => setTimeout(r, 700));
      expect(await qemuProcessesFor(root)).toEqual([q.pid]);
    } finally {
      q.kill('SIGKILL');
    }
    await new Promise((r) => q.on('exit', r));
    expect(await qemuProcessesFor(root)).toEqual([]);
  });
});
