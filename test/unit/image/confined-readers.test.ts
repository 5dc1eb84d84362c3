// The one-runner rule, checked on the source: e2fsprogs' image readers are started only by
// src/image/debugfs.ts (and, to grow a job disk, src/deps/grow-disk.ts; to check a new unshare
// layer before it is published, src/deps/layer.ts), which start them only through the confined
// runner (src/image/confine.ts).
import { describe, expect, it } from 'vitest';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { REPO } from '../../helpers.js';

async function sources(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...await sources(p));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

describe('readers of job images', () => {
  it('start debugfs, e2fsck, resize2fs, dumpe2fs or e2image only in debugfs.ts, grow-disk.ts and layer.ts, and only confined', async () => {
    const users: string[] = [];
    for (const f of await sources(path.join(REPO, 'src'))) {
      const text = await readFile(f, 'utf8');
      if (/['"`](debugfs|e2fsck|resize2fs|fsck\.ext\d|dumpe2fs|e2image|e2ls|e2cp)['"`]/.test(text)) users.push(path.relative(REPO, f));
    }
    expect(users.sort()).toEqual(['src/deps/grow-disk.ts', 'src/deps/layer.ts', 'src/image/debugfs.ts']);
    const layer = await readFile(path.join(REPO, 'src/deps/layer.ts'), 'utf8');
    expect(layer).toMatch(/box\.run\('dumpe2fs'/);
    expect(layer).toMatch(/box\.run\('e2fsck'/);
    expect(layer).not.toMatch(/[^.]run\('(dumpe2fs|e2fsck|debugfs|resize2fs)'/); // never through proc.ts's run
    const grow = await readFile(path.join(REPO, 'src/deps/grow-disk.ts'), 'utf8');
    expect(grow).not.toMatch(/from '\.\.\/proc\.js'/);
    expect(grow).toMatch(/box\.run\('e2fsck'/);
    expect(grow).toMatch(/box\.run\('resize2fs'/);
    const debugfs = await readFile(path.join(REPO, 'src/image/debugfs.ts'), 'utf8');
    expect(debugfs).not.toMatch(/from '\.\.\/proc\.js'/); // no unconfined process start
    expect(debugfs).toMatch(/box\.session\('debugfs'/);
  });
});
