import { describe, expect, it } from 'vitest';
import { isJrError } from '../../../src/errors.js';
import { MANIFEST_MAX_BYTES, parseManifest } from '../../../src/deps/manifest.js';
import { isDebianVersion, relationError, splitRelations } from '../../../src/deps/debian-syntax.js';

const limits = { maxMemory: 4 * 1024 ** 3, maxCpus: 4, maxTimeout: 6 * 3600_000, maxDisk: 32 * 1024 ** 3 };
const parse = (doc: unknown): ReturnType<typeof parseManifest> => parseManifest(typeof doc === 'string' ? doc : JSON.stringify(doc), limits);
const rejects = (doc: unknown, pattern: RegExp): void => {
  let err: unknown;
  try { parse(doc); } catch (e) { err = e; }
  expect(isJrError(err, 'JR_E_INPUT'), `expected JR_E_INPUT for ${JSON.stringify(doc)?.slice(0, 60)}`).toBe(true);
  expect((err as Error).message).toMatch(pattern);
};

describe('job manifest', () => {
  it('accepts the documented example and normalises relations', () => {
    const m = parse({ packages: ['debhelper', 'libssl-dev', 'foo  (>= 1.2-1)', 'aa | bb:amd64', 'gcc [amd64] <!nocheck>'],
      conflicts: ['bar (<< 2)'], memory: '2G', cpus: 2, timeout: '1h', disk: '4G', publish: 'output' });
    expect(m).toEqual({ packages: ['debhelper', 'libssl-dev', 'foo (>= 1.2-1)', 'aa | bb:amd64', 'gcc [amd64] <!nocheck>'],
      conflicts: ['bar (<< 2)'], memory: 2 * 1024 ** 3, cpus: 2, timeout: 3600_000, disk: 4 * 1024 ** 3, publish: 'output' });
    expect(parse({})).toMatchObject({ packages: [], memory: null, publish: 'image' });
  });

  it('refuses malformed JSON and non-objects', () => {
    rejects('{"packages": [', /not valid JSON/);
    rejects('[]', /Expected a JSON object/);
    rejects('null', /Expected a JSON object/);
    rejects('"debhelper"', /Expected a JSON object/);
  });

  it('refuses unknown fields', () => {
    rejects({ packages: [], network: 'user' }, /unknown field "network"/);
    rejects({ __proto__x: 1 }, /unknown field/);
  });

  it('refuses wrongly typed fields with the field named', () => {
    rejects({ packages: 'debhelper' }, /Expected packages to be an array/);
    rejects({ packages: [1] }, /Expected packages\[0\] to be a string/);
    rejects({ cpus: '2' }, /Expected cpus to be a whole number/);
    rejects({ cpus: 1.5 }, /Expected cpus/);
    rejects({ memory: 'lots' }, /Expected memory to be a positive size/);
    rejects({ memory: '64M' }, /at least 128M/);
    rejects({ timeout: '-1h' }, /Expected timeout to be a positive duration/);
    rejects({ publish: 'everything' }, /Expected publish to be "image" or "output"/);
  });

  it('caps requests by the operator limits', () => {
    rejects({ memory: '8G' }, /above this service's limit \(--max-memory 4\.0 GiB\)/);
    rejects({ cpus: 64 }, /--max-cpus 4/);
    rejects({ timeout: '7h' }, /--max-timeout/);
    rejects({ disk: '1T' }, /--max-disk/);
    expect(parse({ memory: '4G', cpus: 4, timeout: '6h', disk: '32G' }).cpus).toBe(4);
  });

  it('refuses shell metacharacters, options and odd bytes in package names', () => {
    for (const p of ['foo; rm -rf /', '$(reboot)', '`id`', 'foo && bar', '-o=APT::Get::Assume-Yes', '--allow-unauthenticated',
      'foo\nbar', 'Foo', 'a', 'foo (>= 1.2', 'foo (>= $(x))', 'foo (~> 1)', 'foo [amd64', 'foo:../x', 'fo\u00f6', 'foo/stable', 'foo=1.2', '*']) {
      rejects({ packages: [p] }, /Expected packages\[0\] to be a Debian relation/);
    }
  });

  it('refuses a huge manifest and a 10,000-package one', () => {
    rejects(JSON.stringify({ packages: ['x'.repeat(MANIFEST_MAX_BYTES)] }), /Expected at most 65536 bytes/);
    const many = Array.from({ length: 10_000 }, (_, i) => `p${i}`);
    rejects({ packages: many }, /Expected at most \d+ bytes|Expected at most 500 packages/);
    // Under the byte cap but over the count cap: still refused, by count.
    rejects({ packages: Array.from({ length: 600 }, (_, i) => `p${i}`) }, /Expected at most 500 packages/);
  });
});

describe('Debian syntax', () => {
  it('knows versions', () => {
    for (const v of ['1.0', '1:2.3-4', '2.38.1-5+deb12u3', '0~20171227-0.3+deb12u1', '1.0~rc1']) expect(isDebianVersion(v), v).toBe(true);
    for (const v of ['', 'a1', '1:', '1.0-', 'x:1', '1 0', ':1']) expect(isDebianVersion(v), v).toBe(false);
  });
  it('knows relations and splits fields', () => {
    expect(relationError('debhelper-compat (= 13)')).toBeNull();
    expect(relationError('python3:any | python3-minimal:any')).toBeNull();
    expect(relationError('libc6-dev [!hurd-i386] <!stage1 !nocheck> <cross>')).toBeNull();
    expect(relationError('x')).toMatch(/not a Debian package name/);
    expect(splitRelations('debhelper-compat (= 13),\n texinfo , libfoo-dev [amd64],')).toEqual(['debhelper-compat (= 13)', 'texinfo', 'libfoo-dev [amd64]']);
  });
});
