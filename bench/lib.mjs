// Shared bench helpers (plain JS over the compiled dist/).
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Make a trivial job image (exit 0) with the real mkimage; returns its path. */
export function trivialJob(dir, name = 'trivial', script = 'echo ok', extra = ['--extra', '64M']) {
  const tree = path.join(dir, `${name}.tree`);
  mkdirSync(path.join(tree, 'bin'), { recursive: true });
  writeFileSync(path.join(tree, 'bin', 'construir'), `#!/bin/sh\n${script}\n`);
  chmodSync(path.join(tree, 'bin', 'construir'), 0o755);
  const img = path.join(dir, `${name}.img`);
  execFileSync(path.join(ROOT, 'scripts', 'mkimage'), [tree, '-o', img, ...extra, '--force'], { stdio: 'ignore' });
  return img;
}

export function scratchDir(prefix) {
  return mkdtempSync(path.join(os.tmpdir(), `bench-${prefix}-`));
}

export function copySparse(src, dst) {
  execFileSync('cp', ['--sparse=always', '-f', src, dst]);
}
