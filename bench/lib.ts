// Shared bench helpers. The bench scripts are TypeScript against src/, run with tsx (bench/boot etc.).
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Median of a non-empty list. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Make a trivial job image (exit 0) with the real mkimage; returns its path. */
export function trivialJob(dir: string, name = 'trivial', script = 'echo ok', extra = ['--extra', '64M']): string {
  const tree = path.join(dir, `${name}.tree`);
  mkdirSync(path.join(tree, 'bin'), { recursive: true });
  writeFileSync(path.join(tree, 'bin', 'construir'), `#!/bin/sh\n${script}\n`);
  chmodSync(path.join(tree, 'bin', 'construir'), 0o755);
  const img = path.join(dir, `${name}.img`);
  execFileSync(path.join(ROOT, 'scripts', 'mkimage'), [tree, '-o', img, ...extra, '--force'], { stdio: 'ignore' });
  return img;
}

/** A fresh directory under the system temp dir. */
export function scratchDir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), `bench-${prefix}-`));
}

/** cp --sparse=always. */
export function copySparse(src: string, dst: string): void {
  execFileSync('cp', ['--sparse=always', '-f', src, dst]);
}
