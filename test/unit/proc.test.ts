// spawnLean: the compressor's per-block process start. Every way a child can end must settle `done`.
import { describe, expect, it } from 'vitest';
import { spawnLean } from '../../src/proc.js';

describe('spawnLean', () => {
  it('pipes stdin to stdout and reports exit 0', async () => {
    const p = spawnLean('tr', ['a-z', 'A-Z'], { stdin: 'pipe' });
    let out = '';
    p.stdout.setEncoding('utf8').on('data', (s: string) => { out += s; });
    p.stdin!.end('hello');
    expect(await p.done).toEqual({ exitCode: 0, signal: null, error: null });
    expect(out).toBe('HELLO');
  });

  it('reports a non-zero exit and keeps stderr readable', async () => {
    const p = spawnLean('sh', ['-c', 'echo oops >&2; exit 7']);
    let err = '';
    p.stderr.setEncoding('utf8').on('data', (s: string) => { err += s; });
    expect(await p.done).toMatchObject({ exitCode: 7, signal: null, error: null });
    expect(err).toBe('oops\n');
  });

  it('reports a kill by signal', async () => {
    const p = spawnLean('sleep', ['30']);
    p.kill('SIGKILL');
    expect(await p.done).toMatchObject({ exitCode: null, signal: 'SIGKILL' });
  });

  it('settles with the error when the program does not exist', async () => {
    const p = spawnLean('/nonexistent/xz-not-here', []);
    const r = await p.done;
    expect(r.exitCode).toBeNull();
    expect(r.error?.message).toMatch(/ENOENT/);
  });
});
