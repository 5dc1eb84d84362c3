// Building a template's files: boot the guest once with construir in template mode (its root disk
// writing to a new qcow2 overlay over root.img), wait for @@construir-template:ready@@, stop it, and
// save its state by migration into `state` (qemu streams it into a unix socket we listen on: an
// `exec:` target would be killed by the seccomp sandbox's spawn=deny, and `fd:` needs fd passing).
import { constants, createWriteStream } from 'node:fs';
import { chmod, chown, copyFile, open, stat, type FileHandle } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { once } from 'node:events';
import path from 'node:path';
import { JrError, messageOf } from '../errors.js';
import type { BaseImage } from '../image/base.js';
import { run, spawn, tail } from '../proc.js';
import { launchArgv } from './launch.js';
import { Qmp } from './qmp.js';
import { templateBuildArgs, type TemplateShape } from './template-args.js';

export const READY_MARKER = '@@construir-template:ready@@';

export interface BuildTimings { bootMs: number; saveMs: number; totalMs: number }

export interface BuildRequest {
  base: BaseImage;
  qemu: string;
  inputs: { shape: TemplateShape };
  bootTimeoutMs: number;
  killGraceMs: number;
  runAs?: { uid: number; gid: number };
  /** Where `state` and `root.qcow2` are written. */
  outDir: string;
  /** qemu's scratch (QMP and migration sockets, boot file copies); handed to runAs. */
  tmpDir: string;
}

/** Boot, wait for ready, save; leaves `state` and `root.qcow2` in outDir. Throws JR_E_TEMPLATE. */
export async function buildTemplateFiles(req: BuildRequest): Promise<BuildTimings> {
  const started = Date.now();
  const shape = req.inputs.shape;
  const overlay = path.join(req.outDir, 'root.qcow2');
  const statePath = path.join(req.outDir, 'state');
  // The overlay's recorded backing name is informational only: qemu is always given the backing
  // explicitly (-blockdev backing=base), as an fd; -u: do not open it here either.
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-u', '-F', 'raw', '-b', 'root.img', overlay, String((await stat(req.base.root)).size)],
    { errorCode: 'JR_E_TEMPLATE' });
  const kernel = path.join(req.tmpDir, 'vmlinuz');
  const initrd = path.join(req.tmpDir, 'initrd.img');
  await copyFile(req.base.kernel, kernel);
  await copyFile(req.base.initrd, initrd);
  const qmpSocket = path.join(req.tmpDir, 'qmp.sock');
  const migSocket = path.join(req.tmpDir, 'mig.sock');
  if (req.runAs) for (const f of [req.tmpDir, kernel, initrd]) await chown(f, req.runAs.uid, req.runAs.gid);

  const argv = launchArgv({ qemuBinary: req.qemu, runAs: req.runAs, args: templateBuildArgs(shape, { kernel, initrd, qmpSocket }) });
  const fds: FileHandle[] = [];
  let child;
  try {
    fds.push(await open(req.base.root, constants.O_RDONLY | constants.O_NOFOLLOW));
    fds.push(await open('/dev/null', constants.O_RDONLY), await open('/dev/null', constants.O_RDONLY));
    fds.push(await open(overlay, constants.O_RDWR | constants.O_NOFOLLOW), await open(overlay, constants.O_RDONLY | constants.O_NOFOLLOW));
    ({ child } = await spawn(argv[0]!, argv.slice(1), { env: { TMPDIR: req.tmpDir }, stdin: 'ignore', stderr: 'pipe', extraFds: fds.map((f) => f.fd), detached: true }));
  } finally {
    await Promise.all(fds.map((f) => f.close()));
  }
  let stderr = '';
  let console = '';
  child.stderr?.on('data', (c: Buffer) => { stderr = (stderr + c.toString('utf8')).slice(-4000); });
  const ready = new Promise<void>((resolve) => {
    child.stdout?.on('data', (c: Buffer) => {
      console = (console + c.toString('latin1')).slice(-8000);
      if (console.includes(READY_MARKER)) resolve();
    });
  });
  const exited = child.then(() => { throw new JrError('JR_E_TEMPLATE', `qemu ended during the template boot: ${tail(stderr.trim() || console.trim(), 600)}`); });
  exited.catch(() => undefined);
  const killGroup = (): void => { try { if (child.pid) process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ } };
  // A build runs in the background of a service: when the service exits mid-build (SIGTERM, drained),
  // its template guest (waiting at ready forever) must not outlive it.
  process.once('exit', killGroup);
  let server: Server | null = null;
  let qmp: Qmp | null = null;
  try {
    const deadline = started + req.bootTimeoutMs;
    qmp = await Promise.race([Qmp.connect(qmpSocket, deadline), exited]);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([ready, exited, new Promise((_, reject) => {
      timer = setTimeout(() => reject(new JrError('JR_E_TEMPLATE', `the template guest was not ready within ${Math.round(req.bootTimeoutMs / 1000)}s; last console output: ${tail(console.trim(), 300)}`)), req.bootTimeoutMs);
    })]).finally(() => clearTimeout(timer));
    const bootMs = Date.now() - started;

    // Save: stopped first (one pass, no dirty-page rounds), bandwidth cap lifted (default 32 MiB/s).
    const t = Date.now();
    await qmp.execute('stop');
    await qmp.execute('migrate-set-parameters', { 'max-bandwidth': 64 * 1024 ** 3, 'downtime-limit': 60_000 });
    const out = createWriteStream(statePath, { mode: 0o600 });
    const received = new Promise<void>((resolve, reject) => {
      server = createServer((sock) => {
        sock.pipe(out);
        out.on('finish', resolve);
        out.on('error', reject);
        sock.on('error', reject);
      });
    });
    server!.listen(migSocket);
    await once(server!, 'listening');
    if (req.runAs) await chmod(migSocket, 0o666);
    await qmp.execute('migrate', { uri: `unix:${migSocket}` });
    for (;;) {
      const st = await qmp.execute<{ status?: string; 'error-desc'?: string }>('query-migrate');
      if (st.status === 'completed') break;
      if (st.status === 'failed' || st.status === 'cancelled') throw new JrError('JR_E_TEMPLATE', `saving the template state failed: ${st['error-desc'] ?? st.status}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    await Promise.race([received, exited]);
    const saveMs = Date.now() - t;
    await qmp.execute('quit').catch(() => undefined);
    await child;
    return { bootMs, saveMs, totalMs: Date.now() - started };
  } catch (e) {
    throw e instanceof JrError ? e : new JrError('JR_E_TEMPLATE', `template boot failed: ${messageOf(e)}`, { cause: e });
  } finally {
    qmp?.close();
    (server as Server | null)?.close();
    killGroup();
    process.removeListener('exit', killGroup);
  }
}
