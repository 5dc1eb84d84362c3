// Pure parsing of debugfs answers about untrusted images (no processes, milliseconds).
import { describe, expect, it } from 'vitest';
import { parseStat, splitEchoes } from '../../../src/image/debugfs.js';

const head = (ino: number, type: string, mode: string, flags: string, size: number): string =>
  `Inode: ${ino}   Type: ${type}    Mode:  ${mode}   Flags: 0x${flags}\nGeneration: 0    Version: 0x00000000:00000000\n`
  + `User:     0   Group:     0   Project:     0   Size: ${size}\nFile ACL: 0\nLinks: 1   Blockcount: 8\n`;

describe('debugfs stat parsing', () => {
  it('reads an extent map, leaving out unwritten extents and index blocks', () => {
    const s = parseStat(16, head(16, 'regular', '0644', '80000', 10_000_000) + 'EXTENTS:\n(ETB0):900, (0-3):1000-1003, (4-9[u]):2000-2005, (4882):1175\n');
    expect(s).toMatchObject({ ino: 16, type: 'regular', mode: 0o644, size: 10_000_000, inline: false, fastLink: null });
    expect(s.extents).toEqual([{ logical: 0, physical: 1000, count: 4 }, { logical: 4882, physical: 1175, count: 1 }]);
  });

  it('reads an ext2 block map with indirect blocks, up to TOTAL', () => {
    const s = parseStat(12, head(12, 'regular', '0600', '0', 204800) + 'BLOCKS:\n(0-11):597-608, (IND):609, (12-199):610-797\nTOTAL: 201\n');
    expect(s.extents).toEqual([{ logical: 0, physical: 597, count: 12 }, { logical: 12, physical: 610, count: 188 }]);
  });

  it('reads fast symlinks, inline data and the file type', () => {
    expect(parseStat(14, head(14, 'symlink', '0777', '0', 8) + 'Fast link dest: "../f.txt"\n')).toMatchObject({ type: 'symlink', fastLink: '../f.txt' });
    expect(parseStat(13, head(13, 'regular', '0644', '10000000', 8) + 'Size of inline data: 60\n')).toMatchObject({ inline: true, extents: [] });
    expect(parseStat(15, head(15, 'FIFO', '0644', '0', 0)).type).toBe('other');
    expect(parseStat(15, head(15, 'regular', '4755', '0', 0)).mode).toBe(0o4755); // kept here; extractTree drops it
  });

  it('refuses an answer about another inode, an unreadable one, or a map whose ranges disagree', () => {
    expect(() => parseStat(17, head(16, 'regular', '0644', '0', 1))).toThrow(/inode 17 cannot be read/);
    expect(() => parseStat(17, 'stat: Illegal inode number\n')).toThrow(/inode 17 cannot be read/);
    expect(() => parseStat(16, head(16, 'regular', '0644', '0', 1) + 'EXTENTS:\n(0-9):100-101\n')).toThrow(/malformed block map/);
  });
});

describe('debugfs -f output splitting', () => {
  it('cuts on each request echo, in order', () => {
    const out = Buffer.from('debugfs: ls -p <2>\n/2/040755/0/0/.//\ndebugfs: stat <12>\nInode: 12\n');
    expect(splitEchoes(out, ['ls -p <2>', 'stat <12>']).map(String)).toEqual(['/2/040755/0/0/.//\n', 'Inode: 12\n']);
  });

  it('fails when an answer is missing', () => {
    expect(() => splitEchoes(Buffer.from('debugfs: ls -p <2>\nx\n'), ['ls -p <2>', 'stat <12>'])).toThrow(/did not answer request "stat <12>"/);
  });
});
