import { describe, expect, it } from 'vitest';
import { parseLsP } from '../../../src/image/ext.js';

const ok = '/2/040755/0/0/.//\n/2/040755/0/0/..//\n/12/100644/0/0/answer/3/\n/13/040755/0/0/sub//\n';

describe('debugfs ls -p parsing (names from untrusted images)', () => {
  it('lists ordinary entries', () => {
    expect(parseLsP(ok, '/output')).toEqual([
      { ino: 12, name: 'answer', mode: 0o100644, isDir: false, size: 3 },
      { ino: 13, name: 'sub', mode: 0o40755, isDir: true, size: 0 },
    ]);
  });

  it('skips unused slots (inode 0: deleted entries, empty directory blocks)', () => {
    expect(parseLsP(ok + '/0/000000/0/0//0/\n', '/output').map((e) => e.name)).toEqual(['answer', 'sub']);
  });

  it('refuses a name that forges an extra ".." line to hide a path', () => {
    // A name "../x\n/13/100644/0/0/authorized_keys" would print as two well-formed lines.
    const forged = ok + '/14/100644/0/0/..//\n/13/100644/0/0/authorized_keys/9/\n';
    expect(() => parseLsP(forged, '/output')).toThrow(/extra '\.\.' entry/);
  });

  it('refuses lines whose numeric fields are not numbers, or with a slash in the name', () => {
    expect(() => parseLsP(ok + '/x/100644/0/0/evil/1/\n', '/o')).toThrow(/unsafe file name/);
    expect(() => parseLsP(ok + '/15/100644/0/0/a/b/1/\n', '/o')).toThrow(/unsafe file name/);
  });
});
