// readManifestBytes against real ext4 images built with mke2fs -d (no mount, no root needed).
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isJrError } from '../../../src/errors.js';
import { makeExtImage } from '../../../src/image/ext.js';
import { readManifestBytes } from '../../../src/deps/manifest-read.js';

let tmp: string;
async function image(name: string, fill: (dir: string) => Promise<void>): Promise<string> {
  const dir = path.join(tmp, name);
  await mkdir(path.join(dir, 'bin'), { recursive: true });
  await writeFile(path.join(dir, 'bin', 'construir'), '#!/bin/sh\n', { mode: 0o755 });
  await fill(dir);
  const out = path.join(tmp, `${name}.img`);
  await makeExtImage(dir, out, 16 * 1024 * 1024, 'ext4');
  return out;
}
async function refusal(img: string): Promise<string> {
  try { await readManifestBytes(img); } catch (e) { expect(isJrError(e, 'JR_E_INPUT')).toBe(true); return (e as Error).message; }
  throw new Error('expected a JR_E_INPUT refusal');
}

beforeAll(async () => { tmp = await mkdtemp(path.join(os.tmpdir(), 'jr-manifest-read-')); });
afterAll(async () => { await rm(tmp, { recursive: true, force: true }); });

describe('reading jobrunner.json from a job image', () => {
  it('returns null when there is none, the bytes when there is one', async () => {
    expect(await readManifestBytes(await image('none', async () => {}))).toBeNull();
    const text = JSON.stringify({ packages: ['debhelper'] });
    const got = await readManifestBytes(await image('one', (d) => writeFile(path.join(d, 'jobrunner.json'), text)));
    expect(got?.toString('utf8')).toBe(text);
  });
  it('refuses a manifest over 64 KiB without reading it', async () => {
    const img = await image('huge', (d) => writeFile(path.join(d, 'jobrunner.json'), `{"packages":["${'a'.repeat(70 * 1024)}"]}`));
    expect(await refusal(img)).toMatch(/jobrunner\.json in the image is 71697 bytes, more than the 65536 allowed/);
  });
  it('refuses a symlink or a directory in its place', async () => {
    expect(await refusal(await image('link', (d) => symlink('/etc/shadow', path.join(d, 'jobrunner.json'))))).toMatch(/jobrunner\.json in the image is not a regular file/);
    expect(await refusal(await image('dir', (d) => mkdir(path.join(d, 'jobrunner.json'))))).toMatch(/jobrunner\.json in the image is not a regular file/);
  });
  it('finds no manifest in a file that is not an ext image (the job-image check before it refuses such a file)', async () => {
    const junk = path.join(tmp, 'junk.img');
    await writeFile(junk, Buffer.alloc(1024 * 1024, 0x41));
    expect(await readManifestBytes(junk)).toBeNull();
  });
});
