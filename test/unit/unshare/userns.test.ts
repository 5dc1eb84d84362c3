// The sandbox's set-up while bwrap waits on --userns-block-fd (src/unshare/userns.ts): a failed
// step kills bwrap's process group and never releases the block fd. A stand-in "bwrap" (sh:
// reports a child on fd 4, waits on fd 3 like bwrap's parent does, then records that it was
// released) plays bwrap.
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { spawn } from '../../../src/proc.js';
import { setUpSandbox, type SetUpEnd } from '../../../src/unshare/userns.js';

const dirP = mkdtemp(path.join(os.tmpdir(), 'unshare-userns-'));
afterAll(async () => rm(await dirP, { recursive: true, force: true }));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** True once `pid` is gone or a zombie (SIGKILLed, not yet reaped by whoever inherited it). */
async function dead(pid: number, ms = 5000): Promise<boolean> {
  for (const until = Date.now() + ms; Date.now() < until; await sleep(50)) {
    const st = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
    if (st === null || st.slice(st.lastIndexOf(')') + 2).startsWith('Z')) return true;
  }
  return false;
}

/** Live (not zombie) processes of process group `pgid`. */
async function groupMembers(pgid: number): Promise<number[]> {
  const out: number[] = [];
  for (const p of await readdir('/proc')) {
    const st = /^\d+$/.test(p) ? await readFile(`/proc/${p}/stat`, 'utf8').catch(() => null) : null;
    const f = st?.slice(st.lastIndexOf(')') + 2).split(' ');
    if (f && f[0] !== 'Z' && Number(f[2]) === pgid) out.push(Number(p));
  }
  return out;
}

// bwrap's parent side: report the child, wait for the block fd (data or EOF), then let it go.
const FAKE_BWRAP = `sleep 60 & kid=$!
printf '{\\n    "child-pid": %d\\n}\\n' "$kid" >&4
exec 4>&-
head -c 1 <&3 >/dev/null
echo released > "$1"
kill "$kid"`;

async function fakeBwrap(setUp: (nsInit: number) => Promise<void>): Promise<{ end: SetUpEnd; pid: number; released: boolean; signal: string | null }> {
  const mark = path.join(await dirP, `released-${Math.random().toString(36).slice(2)}`);
  const { child } = await spawn('sh', ['-c', FAKE_BWRAP, 'fake-bwrap', mark], { extraPipes: 2, detached: true });
  const [block, info] = [child.stdio[3], child.stdio[4]] as unknown as [NodeJS.WritableStream, NodeJS.ReadableStream];
  const end = await setUpSandbox({ pid: child.pid!, info, block, exited: () => child.exitCode !== null || child.signalCode !== null,
    exit: child.then(() => undefined, () => undefined) }, setUp);
  const r = await child;
  return { end, pid: child.pid!, released: existsSync(mark), signal: r.signal ?? null };
}

describe('the sandbox set-up (bwrap held on --userns-block-fd)', () => {
  it('releases bwrap once every step succeeded', async () => {
    let seen = 0;
    const r = await fakeBwrap(async (pid) => { seen = pid; });
    expect(r.end).toEqual({ nsInit: seen, failure: null });
    expect(r.released).toBe(true);
    expect(r.signal).toBeNull();
  });

  it('a failed step SIGKILLs bwrap\'s process group (its waiting child too) and never releases it', async () => {
    let kid = 0;
    const r = await fakeBwrap(async (pid) => { kid = pid; await sleep(100); throw new Error('could not write the sandbox\'s uid_map: EPERM (test)'); });
    expect(r.end).toEqual({ nsInit: kid, failure: 'could not write the sandbox\'s uid_map: EPERM (test)' });
    expect(r.signal).toBe('SIGKILL');
    expect(r.released).toBe(false);
    expect(await dead(kid)).toBe(true);
    expect(await groupMembers(r.pid)).toEqual([]); // nothing of the group runs
  });

  it('a bwrap that reports no child is left to end by itself', async () => {
    const { child } = await spawn('sh', ['-c', 'exec 4>&-; exit 1'], { extraPipes: 2, detached: true });
    const [block, info] = [child.stdio[3], child.stdio[4]] as unknown as [NodeJS.WritableStream, NodeJS.ReadableStream];
    let called = false;
    const end = await setUpSandbox({ pid: child.pid!, info, block, exited: () => child.exitCode !== null, exit: child.then(() => undefined) },
      async () => { called = true; });
    expect(end).toEqual({ nsInit: null, failure: null });
    expect(called).toBe(false);
    expect((await child).exitCode).toBe(1);
  });
});
