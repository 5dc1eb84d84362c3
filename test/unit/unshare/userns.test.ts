// The sandbox's set-up while bwrap waits on --userns-block-fd (src/unshare/userns.ts): a failed
// step kills bwrap's process group and never releases the block fd; the namespace is reached only
// through files opened on bwrap's verified child. A stand-in "bwrap" (sh: reports a child on fd 4,
// waits on fd 3 like bwrap's parent does, then records that it was released) plays bwrap for the
// first part; the second needs root and a real user namespace (unshare --user).
import { spawn as spawnNode } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { spawn } from '../../../src/proc.js';
import { parentOf } from '../../../src/procfs.js';
import { openSandboxUserns, setUpSandbox, type SetUpEnd } from '../../../src/unshare/userns.js';

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

  it('a child in our own user namespace fails the check: killed, not released', async () => {
    const r = await fakeBwrap(async (pid) => { await (await openSandboxUserns(pid, Number.NaN)).close(); });
    expect(r.end.failure).toMatch(/is not bwrap's child any more/);
    expect(r.released).toBe(false);
    const again = await fakeBwrap(async (pid) => { await (await openSandboxUserns(pid, (await parentOf(pid))!)).close(); });
    expect(again.end.failure).toMatch(/is in our own user namespace/);
    expect(again.released).toBe(false);
    expect(again.signal).toBe('SIGKILL');
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

const CAN = process.getuid?.() === 0 && existsSync('/usr/bin/unshare') && existsSync('/usr/bin/perl');

describe.skipIf(!CAN)('the sandbox\'s user namespace, through files opened on the checked child', () => {
  /** A child of ours in a user namespace of its own: it waits for a line on stdin, then prints `script`'s output. */
  async function inNewUserns(script: string): Promise<{ pid: number; go: () => Promise<string> }> {
    const child = spawnNode('unshare', ['--user', 'sh', '-c', `read x; ${script}`], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
    const done = new Promise<void>((r) => child.on('exit', () => r()));
    const mine = await readlink('/proc/self/ns/user');
    // unshare(2) then exec: wait until the child is in its namespace.
    for (let i = 0; i < 100 && (await readlink(`/proc/${child.pid}/ns/user`).catch(() => mine)) === mine; i++) await sleep(20);
    return { pid: child.pid!, go: async () => { child.stdin.end('go\n'); await done; return out; } };
  }

  it('maps 65536 ids and sets user.max_user_namespaces to 0 in that namespace only', async () => {
    const before = await readFile('/proc/sys/user/max_user_namespaces', 'utf8');
    const c = await inNewUserns('cat /proc/self/uid_map /proc/self/gid_map /proc/sys/user/max_user_namespaces');
    const u = await openSandboxUserns(c.pid, process.pid);
    try {
      await u.map(700000000);
      await u.denyUserNamespaces();
      expect(u.pidNs).toMatch(/^pid:\[\d+\]$/);
    } finally { await u.close(); }
    const lines = (await c.go()).trim().split('\n').map((l) => l.trim().split(/\s+/).join(' '));
    expect(lines).toEqual(['0 700000000 65536', '0 700000000 65536', '0']);
    expect(await readFile('/proc/sys/user/max_user_namespaces', 'utf8')).toBe(before);
    expect(Number(before)).toBeGreaterThan(0);
  });

  it('refuses a process whose parent is not bwrap (a pid now someone else\'s), and a gone one, before writing anything', async () => {
    const c = await inNewUserns('cat /proc/self/uid_map');
    await expect(openSandboxUserns(c.pid, 1)).rejects.toThrow(/not bwrap's child any more \(its parent is \d+, not 1\)/);
    expect((await c.go()).trim()).toBe(''); // no map was written
    await expect(openSandboxUserns(c.pid, process.pid)).rejects.toThrow(/could not open \/proc\/\d+\/ns\/user/);
  });
});
