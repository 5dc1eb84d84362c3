// Resolve and fetch on the host with apt against the real base image's private state and Debian's
// archive (network). Nothing is installed on the host: only apt-get satisfy -s and apt-get download.
import { chmod, readFile, rm, stat } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isJrError } from '../../../src/errors.js';
import { loadBaseImage, type BaseImage } from '../../../src/image/base.js';
import { ensureAptState, type AptState } from '../../../src/deps/apt-state.js';
import { resolvePackages } from '../../../src/deps/resolve.js';
import { fetchDebs } from '../../../src/deps/fetch.js';
import { BASE_DIR, HAVE_BASE, scratch } from '../../helpers.js';

let cache = '';
let base: BaseImage;
let state: AptState;

describe.skipIf(!HAVE_BASE)('resolve and fetch with apt on the host', () => {
  beforeAll(async () => {
    cache = await scratch('deps-cache');
    await chmod(cache, 0o755); // apt's _apt download user must reach the lists dir, as in a real cache
    base = await loadBaseImage(BASE_DIR, 'default');
    state = await ensureAptState(cache, base);
  }, 180_000);
  afterAll(async () => { if (cache) await rm(cache, { recursive: true, force: true }); });

  it('uses the base image\'s sources and status, not the host\'s', async () => {
    const sources = await readFile(`${state.dir}/etc/sources.list`, 'utf8');
    expect(sources).toMatch(/^deb http:\/\/deb\.debian\.org\/debian bookworm main/m);
    // build-essential is in the base: resolving it installs nothing.
    expect(await resolvePackages(state, ['build-essential'])).toEqual([]);
  });

  it('returns apt\'s closure for a relation with a version and alternatives', async () => {
    const got = await resolvePackages(state, ['debhelper (>= 13)', 'nonexistent-pkg-jr | dwz']);
    const names = got.map((p) => p.name);
    expect(names).toContain('debhelper');
    expect(names).toContain('dwz');
    expect(names).toEqual([...names].sort());
    for (const p of got) expect(p.version).toMatch(/^[0-9]/);
  });

  it('rejects an unknown package with apt\'s own message', async () => {
    let err: unknown;
    try { await resolvePackages(state, ['no-such-package-jr11']); } catch (e) { err = e; }
    expect(isJrError(err, 'JR_E_INPUT')).toBe(true);
    expect((err as Error).message).toMatch(/apt says:\n.*unmet dependencies[\s\S]*Depends: no-such-package-jr11 but it is not installable/);
  });

  it('downloads the exact .debs into the content-addressed cache, once', async () => {
    const pkgs = await resolvePackages(state, ['dwz']);
    expect(pkgs.map((p) => p.name)).toEqual(['dwz']);
    const first = await fetchDebs(state, cache, pkgs);
    expect(first.downloaded).toBe(1);
    const deb = first.debs[0]!;
    const bytes = await readFile(deb.file);
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(deb.sha256);
    expect(deb.file.endsWith(`/debs/${deb.sha256}.deb`)).toBe(true);
    expect((await stat(deb.file)).size).toBe(deb.size);
    const again = await fetchDebs(state, cache, pkgs);
    expect(again.downloaded).toBe(0);
  }, 120_000);
});
