// The sync helper's answers are tied to the helper that gave them (src/fsync-shared.ts): node may
// report a child's exit before the last of its stdout is read, and a dead helper's late "ok" must
// never release a barrier that a newer helper was asked for (that barrier never synced). A stand-in
// for the shell lets the test force that order of events.
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { SyncHelper } from '../../src/fsync-shared.js';

interface FakeShell extends EventEmitter { stdin: PassThrough; stdout: PassThrough; asked: string[]; ref(): void; unref(): void }

function fakes(): { spawn: () => ChildProcessWithoutNullStreams; shells: FakeShell[] } {
  const shells: FakeShell[] = [];
  const spawn = (): ChildProcessWithoutNullStreams => {
    const c = Object.assign(new EventEmitter(), { stdin: new PassThrough(), stdout: new PassThrough(), asked: [] as string[], ref() {}, unref() {} }) as FakeShell;
    c.stdin.on('data', (d: Buffer) => c.asked.push(...d.toString().split('\n').filter(Boolean)));
    shells.push(c);
    return c as unknown as ChildProcessWithoutNullStreams;
  };
  return { spawn, shells };
}
const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 10));

describe('SyncHelper', () => {
  it('a dead helper\'s late "ok" answers only its own request; a request to its successor waits for the successor', async () => {
    const { spawn, shells } = fakes();
    const h = new SyncHelper(spawn);
    const state = { a: 'waiting', b: 'waiting' };
    const a = h.sync('/a').then(() => { state.a = 'synced'; }, () => { state.a = 'failed'; });
    await tick();
    expect(shells).toHaveLength(1);
    expect(shells[0]!.asked).toEqual(['/a']);
    shells[0]!.emit('exit', 0, null); // exit is reported before its stdout has been read
    const b = h.sync('/b').then(() => { state.b = 'synced'; }, () => { state.b = 'failed'; });
    await tick();
    expect(shells).toHaveLength(2); // the dead one takes no new request
    expect(shells[1]!.asked).toEqual(['/b']);
    shells[0]!.stdout.write('ok\n'); // the dead one's answer, late
    await tick();
    expect(state).toEqual({ a: 'synced', b: 'waiting' });
    shells[1]!.stdout.write('ok\n');
    await Promise.all([a, b]);
    expect(state).toEqual({ a: 'synced', b: 'synced' });
  });

  it('a helper that closes before answering fails its waiters (the caller then syncs directly); "fail" fails one', async () => {
    const { spawn, shells } = fakes();
    const h = new SyncHelper(spawn);
    const one = h.sync('/x');
    const two = h.sync('/y');
    await tick();
    shells[0]!.stdout.write('fail\n');
    await expect(one).rejects.toThrow(/sync -f failed/);
    shells[0]!.emit('exit', 1, null);
    shells[0]!.emit('close', 1, null);
    await expect(two).rejects.toThrow(/ended \(1\) before answering/);
  });
});
