// Template keys and the checks before a template is used, without qemu: a fake qemu binary that
// only answers --version, a fake base image and fake template files.
import { chmod, mkdir, mkdtemp, open, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { BaseImage } from '../../../src/image/base.js';
import { digestFile } from '../../../src/image/meta.js';
import { pinnedMachine, restoreArgs, templateBuildArgs, type TemplateShape } from '../../../src/vm/template-args.js';
import { readTemplate, templateInputs, templateKey, type TemplateRequest } from '../../../src/vm/template.js';

let dir: string;
let base: BaseImage;

async function fakeQemu(name: string, version: string): Promise<string> {
  const p = path.join(dir, name);
  await writeFile(p, `#!/bin/sh\necho "QEMU emulator version ${version} (test)"\n`);
  await chmod(p, 0o755);
  return p;
}

const req = (over: Partial<TemplateRequest> = {}): TemplateRequest => ({
  base, qemu: path.join(dir, 'qemu-a'), accel: 'tcg', memoryMiB: 1024, cpus: 2, network: 'off', sandbox: true,
  bootTimeoutMs: 1000, killGraceMs: 100, ...over,
});

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'jr-template-unit-'));
  const b = path.join(dir, 'base');
  await mkdir(b);
  const files: Record<string, { bytes: number; sha256: string }> = {};
  for (const f of ['root.img', 'vmlinuz', 'initrd.img']) {
    await writeFile(path.join(b, f), `${f} contents`);
    files[f] = await digestFile(path.join(b, f));
  }
  base = { name: 'default', dir: b, root: path.join(b, 'root.img'), kernel: path.join(b, 'vmlinuz'), initrd: path.join(b, 'initrd.img'),
    initrdStock: '', rootSha256: files['root.img']!.sha256, meta: { name: 'default', suite: 'bookworm', arch: 'amd64', kernelVersion: 'k', recipeHash: 'r', builtAt: '', files } };
  await fakeQemu('qemu-a', '7.2.22');
  await fakeQemu('qemu-b', '8.0.1');
});

describe('template key', () => {
  it('changes with the base image, qemu, memory, cpus, network and accel, and only then', async () => {
    const k0 = (await templateInputs(req())).key;
    expect((await templateInputs(req())).key).toBe(k0);
    const keys = [
      (await templateInputs(req({ memoryMiB: 768 }))).key,
      (await templateInputs(req({ cpus: 1 }))).key,
      (await templateInputs(req({ network: 'user' }))).key,
      (await templateInputs(req({ accel: 'kvm' }))).key,
      (await templateInputs(req({ sandbox: false }))).key,
      (await templateInputs(req({ qemu: path.join(dir, 'qemu-b') }))).key,
      (await templateInputs(req({ base: { ...base, meta: { ...base.meta, files: { ...base.meta.files, 'root.img': { bytes: 1, sha256: 'x' } } } } }))).key,
    ];
    expect(new Set([k0, ...keys]).size).toBe(keys.length + 1);
    // root.img edited in place without image.json being refreshed: its mtime still changes the key.
    await utimes(base.root, new Date(), new Date(Date.now() - 3_600_000));
    expect((await templateInputs(req())).key).not.toBe(k0);
  });

  it('pins the machine type from qemu\'s version; the other qemu gets its own', async () => {
    expect(pinnedMachine('7.2.22')).toBe('pc-i440fx-7.2');
    expect((await templateInputs(req({ qemu: path.join(dir, 'qemu-b') }))).inputs.shape.machine).toBe('pc-i440fx-8.0');
    expect(() => pinnedMachine('junk')).toThrow(/Expected a qemu version/);
  });
});

describe('template build and restore argv', () => {
  const shape: TemplateShape = { accel: 'tcg', machine: 'pc-i440fx-7.2', memoryMiB: 1024, cpus: 2, network: 'off', sandbox: true };
  const files = { kernel: '/t/vmlinuz', initrd: '/t/initrd.img', qmpSocket: '/t/qmp.sock' };
  const devices = (argv: string[]): string[] => argv.flatMap((a, i) => (['-device', '-machine', '-m', '-smp', '-cpu', '-append', '-kernel', '-initrd', '-serial', '-nic'].includes(a) ? [`${a} ${argv[i + 1]}`] : []));

  it('give the guest the same machine and devices (migration needs identical device sets)', () => {
    expect(devices(restoreArgs(shape, files))).toEqual(devices(templateBuildArgs(shape, files)));
    expect(devices(restoreArgs(shape, files))).toContain('-device vmgenid,guid=auto');
  });

  it('pass no image path to qemu: every disk is an fdset, the backing given explicitly', () => {
    for (const argv of [restoreArgs(shape, files), templateBuildArgs(shape, files)]) {
      expect(argv.join(' ')).not.toMatch(/root\.img|root\.qcow2|\/state\b/);
      expect(argv.join(' ')).toContain('"filename":"/dev/fdset/1"');
    }
    expect(templateBuildArgs(shape, files).join(' ')).toContain('"backing":"base","file":{"driver":"file","filename":"/dev/fdset/3"}');
    const r = restoreArgs(shape, files);
    expect(r.slice(-3)).toEqual(['-S', '-incoming', 'fd:7']);
    expect(r.join(' ')).toContain('file.filename=/dev/fdset/3,backing=base,snapshot=on');
    expect(r.join(' ')).not.toContain('construir.nonce');
  });
});

describe('readTemplate (the checks before use)', () => {
  async function fakeTemplate(name: string): Promise<{ tdir: string; key: string }> {
    const { inputs, key } = await templateInputs(req());
    const tdir = path.join(dir, name);
    await mkdir(tdir);
    const filesMeta: Record<string, { bytes: number; sha256: string }> = {};
    for (const f of ['state', 'root.qcow2']) {
      await writeFile(path.join(tdir, f), `${f} bytes`.repeat(1000));
      filesMeta[f] = await digestFile(path.join(tdir, f));
      await chmod(path.join(tdir, f), 0o444);
    }
    await writeFile(path.join(tdir, 'template.json'), JSON.stringify({ key, inputs, files: filesMeta, builtAt: '', timings: { bootMs: 1, saveMs: 1, totalMs: 2 } }));
    return { tdir, key };
  }

  it('accepts an intact template and verifies its checksums', async () => {
    const { tdir, key } = await fakeTemplate('ok');
    const t = await readTemplate(tdir, key);
    expect(t).not.toBeNull();
    await expect(t!.checksums()).resolves.toBeUndefined();
  });

  it('refuses another key, a tampered template.json, a wrong size and a writable file', async () => {
    const { tdir, key } = await fakeTemplate('bad');
    expect(await readTemplate(tdir, templateKey({ ...(await templateInputs(req({ cpus: 3 }))).inputs }))).toBeNull();
    await chmod(path.join(tdir, 'state'), 0o644);
    expect(await readTemplate(tdir, key)).toBeNull();
    await chmod(path.join(tdir, 'state'), 0o444);
    expect(await readTemplate(tdir, key)).not.toBeNull();
    await chmod(path.join(tdir, 'root.qcow2'), 0o644);
    await writeFile(path.join(tdir, 'root.qcow2'), 'short');
    await chmod(path.join(tdir, 'root.qcow2'), 0o444);
    expect(await readTemplate(tdir, key)).toBeNull();
  });

  it('finds same-size corruption by checksum, even after an earlier successful check', async () => {
    const { tdir, key } = await fakeTemplate('flip');
    await (await readTemplate(tdir, key))!.checksums();
    await chmod(path.join(tdir, 'state'), 0o644);
    const fh = await open(path.join(tdir, 'state'), 'r+');
    await fh.write(Buffer.from('X'), 0, 1, 100);
    await fh.close();
    await chmod(path.join(tdir, 'state'), 0o444);
    const t = await readTemplate(tdir, key);
    await expect(t!.checksums()).rejects.toMatchObject({ code: 'JR_E_TEMPLATE', message: expect.stringMatching(/state does not match its checksum/) });
  });
});
