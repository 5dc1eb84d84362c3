// The import graph gate: src/ has no cycle and no upward import (scripts/imports, layers in
// scripts/lib/imports.mjs). The checker itself is shown to catch both on a small tree.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cycles, importGraph, upwardImports } from '../../scripts/lib/imports.mjs';

const ROOT = path.resolve(__dirname, '../..');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'imports-test-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function tree(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(tmp, 'src-'));
  for (const [f, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    writeFileSync(path.join(dir, f), text);
  }
  return dir;
}

describe('import graph', () => {
  it('src/ has no cycles and no upward imports (scripts/imports exits 0)', () => {
    const out = execFileSync(path.join(ROOT, 'scripts', 'imports'), { encoding: 'utf8' });
    expect(out).toMatch(/cycles: 0\nupward imports: 0\n/);
  });

  it('finds a cycle, an upward import (type-only too) and a directory in no layer', () => {
    const dir = tree({
      'errors.ts': 'export const x = 1;\n',
      'spool/a.ts': "import type { J } from '../job/j.js';\nexport const a = 1;\n",
      'job/j.ts': "import { a } from '../spool/a.js';\nexport type J = number;\n",
      'cli/one.ts': "import {\n  two,\n} from './two.js';\nexport const one = 1;\n",
      'cli/two.ts': "export const two = async () => import('./one.js');\n",
      'mystery/m.ts': 'export const m = 1;\n',
    });
    const g = importGraph(dir);
    expect(g.get('cli/one.ts')).toEqual(['cli/two.ts']);
    expect(cycles(g)).toEqual(expect.arrayContaining([['cli/one.ts', 'cli/two.ts'], ['job/j.ts', 'spool/a.ts']]));
    const up = upwardImports(g);
    expect(up.some((u) => u.startsWith('spool/a.ts -> job/j.ts'))).toBe(true);
    expect(up.some((u) => u.startsWith('mystery/m.ts: its directory is in no layer'))).toBe(true);
    let code = 0;
    try { execFileSync(path.join(ROOT, 'scripts', 'imports'), [dir], { encoding: 'utf8' }); } catch (e) { code = (e as { status: number }).status; }
    expect(code).toBe(1);
  });
});
