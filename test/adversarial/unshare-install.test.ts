// The deps install sandbox under attack (--isolation unshare, issues 11 and 12). An install run is
// the one sandbox that keeps capabilities (INSTALL_CAPS, inside its own user namespace, so dpkg can
// set owners and run maintainer scripts as system users) and writes a layer that later jobs run on.
// Here the escape job runs exactly as an install does (runJobUnshare with rootWritable, the caps,
// a fresh ext4 layer): what dpkg needs works, everything else is still denied. Then a job stacked on
// that layer keeps no capability and cannot change it. Neither can make a user namespace. An
// install whose layer is still busy when it ends (a lazy unmount) is a failed install. Ledger: host files modified 0, processes left 0.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSettings } from '../../src/config.js';
import { loadBaseImage } from '../../src/image/base.js';
import { runJobUnshare } from '../../src/unshare/run.js';
import { INSTALL_CAPS } from '../../src/unshare/sandbox.js';
import { makeEmptyExt4 } from '../../src/unshare/stage.js';
import { BASE_DIR, CAN_UNSHARE, makeJob, scratch, waitFor } from '../helpers.js';
import { Ledger } from './lib/ledger.js';
import { results, scripts } from './unshare/jobs.js';

const ID_BASE = 700000000;
const sha256 = async (f: string): Promise<string> => createHash('sha256').update(await readFile(f)).digest('hex');

/**
 * Host pids running in the sandbox's id range (dedicated to it) that are ours: in this suite's
 * cgroups (sandboxes named `prefix`...) or in no sandbox cgroup at all; another run's are not.
 */
async function rangePids(prefix: string): Promise<number[]> {
  const out: number[] = [];
  for (const p of await readdir('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    const uid = Number(/^Uid:\s+(\d+)/m.exec(await readFile(`/proc/${p}/status`, 'utf8').catch(() => ''))?.[1] ?? -1);
    const group = /jobrunner-unshare-([^/\n]+)/.exec(await readFile(`/proc/${p}/cgroup`, 'utf8').catch(() => ''))?.[1];
    if (group !== undefined && !group.startsWith(prefix)) continue;
    if (uid >= ID_BASE && uid < ID_BASE + 65536) out.push(Number(p));
  }
  return out;
}

/** Files attached to loop devices right now. */
async function loopBackings(): Promise<string[]> {
  const out: string[] = [];
  for (const d of await readdir('/sys/block').catch(() => [] as string[])) {
    const f = d.startsWith('loop') ? (await readFile(`/sys/block/${d}/loop/backing_file`, 'utf8').catch(() => '')).trim() : '';
    if (f) out.push(f);
  }
  return out;
}

// chown, dac_override, dac_read_search, fowner, fsetid, kill, setgid, setuid (bits 0-7) and setfcap (31).
const INSTALL_MASK = '00000000800000ff';

describe.skipIf(!CAN_UNSHARE)('the unshare deps install sandbox under attack (real base image)', () => {
  const ledger = new Ledger();
  let work = '';
  let layer = '';
  let hostSleep: ReturnType<typeof spawn>;
  let inst: Record<string, string> = {};
  let onTop: Record<string, string> = {};
  let layerSha = '';
  let layerShaAfter = '';
  const tag = `${process.pid}`;
  const ids = `adv-install-${tag}`;

  beforeAll(async () => {
    work = await scratch('adv-unshare-install');
    await chmod(work, 0o755);
    hostSleep = spawn('sleep', ['900'], { stdio: 'ignore' });
    const secret = path.join(work, 'secret.txt');
    await writeFile(secret, 'host secret\n');
    const hostDir = path.join(work, 'hostdir');
    await mkdir(hostDir);
    const base = await loadBaseImage(BASE_DIR, 'default');
    for (const f of [secret, '/etc/passwd', '/etc/hostname']) await ledger.watchSentinel(f);
    await ledger.watchSentinel(base.root, false);
    await ledger.watchSentinel(hostDir, false);
    const { settings } = loadSettings(['--isolation', 'unshare', '--timeout', '60s', '--kill-grace', '3s', '--memory', '512M'], {});
    const escape = scripts({ secret, hostDir, hostPid: hostSleep.pid!, tag }).escape;
    // What dpkg does as root of the install: give files to system users, become one, set modes.
    const dpkgLike = `${escape}
try chown sh -c 'touch /var/jr-owned && chown 100:101 /var/jr-owned && test "$(stat -c %u:%g /var/jr-owned)" = 100:101'
try setuid-drop setpriv --reuid=65534 --regid=65534 --clear-groups true
try chmod-suid sh -c 'cp /bin/true /usr/local/bin/jr-suid && chmod 4755 /usr/local/bin/jr-suid && test -u /usr/local/bin/jr-suid'
echo "R:capbnd=$(grep CapBnd /proc/self/status | awk '{print $2}')"
`;
    layer = path.join(work, 'layer.ext4');
    await makeEmptyExt4(layer, 512 * 1024 * 1024, 0, 'deps-layer');
    const img = await makeJob(work, 'install', dpkgLike);
    const log1 = path.join(work, 'install.log');
    const out1 = await runJobUnshare({ image: img, base, settings, logPath: log1, rootLayers: [layer], rootWritable: true, caps: INSTALL_CAPS,
      id: `${ids}-install` });
    expect(out1.end, out1.reason).toBe('exited');
    inst = results(await readFile(log1, 'latin1'));
    await chmod(layer, 0o444);
    layerSha = await sha256(layer);
    // A job on top of that layer: the same escapes, plus writing over what the install left.
    const top = await makeJob(work, 'ontop', `${escape}
test -u /usr/local/bin/jr-suid && echo R:suid-seen=set || echo R:suid-seen=clear
try overwrite-layer sh -c 'rm -rf /usr/local/bin /etc/jr-escape-${tag} && echo owned > /etc/passwd'
try write-others sh -c 'echo owned > /var/jr-owned'
`);
    const log2 = path.join(work, 'ontop.log');
    const out2 = await runJobUnshare({ image: top, base, settings, logPath: log2, rootLayers: [layer], id: `${ids}-ontop` });
    expect(out2.end, out2.reason).toBe('exited');
    onTop = results(await readFile(log2, 'latin1'));
    layerShaAfter = await sha256(layer);
  }, 600_000);

  afterAll(() => { hostSleep?.kill('SIGKILL'); });

  it('the install keeps exactly INSTALL_CAPS: dpkg\'s chown, setuid and modes work inside', () => {
    expect(inst.uid).toBe('0');
    expect(inst.capeff).toBe(INSTALL_MASK);
    expect(inst.capbnd).toBe(INSTALL_MASK);
    expect(inst).toMatchObject({ chown: 'ok', 'setuid-drop': 'ok', 'chmod-suid': 'ok', 'write-etc': 'ok' });
  });

  it('the install still cannot mount, make devices, set the clock, load modules, reach the network or the host', () => {
    expect(inst).toMatchObject({
      // Nor make a user namespace, where it would hold every capability (setfcap lets it map root).
      userns: 'denied', 'userns-root': 'denied', 'userns-clone': 'denied',
      mount: 'denied', remount: 'denied', mknod: 'denied', clock: 'denied', hostname: 'denied', modprobe: 'denied', insmod: 'denied',
      reboot: 'denied', 'net-link': 'denied', tcp: 'denied', 'kill-host': 'denied', hostproc: 'absent', ptrace: 'denied',
      secret: 'absent', work: 'absent', disk: 'absent',
    });
    // A directory named like a host one is made inside (in the layer); the host's stays untouched (ledger).
    expect(inst['write-hostdir']).toBe('ok');
    expect(inst.links?.trim()).toBe('lo');
  });

  it('a job on the layer has no capability, sees the install\'s files but cannot change the layer', () => {
    expect(onTop.capeff).toBe('0000000000000000');
    expect(onTop).toMatchObject({ mount: 'denied', mknod: 'denied', 'kill-host': 'denied', secret: 'absent', 'overwrite-layer': 'ok',
      userns: 'denied', 'userns-root': 'denied', 'userns-clone': 'denied' });
    // Root without capabilities is not the owner of another user's file (the job contract of unshare).
    expect(onTop['write-others']).toBe('denied');
    // The set-uid bit the install set is in the layer (dpkg needs that); the overlay is mounted
    // nosuid and the sandbox has no_new_privs, so it raises no one.
    expect(onTop['suid-seen']).toBe('set');
    expect(layerShaAfter).toBe(layerSha);
  });

  it('ledger: host files modified 0, processes left 0', async () => {
    expect(await ledger.modifiedSentinels()).toEqual([]);
    expect(await rangePids(ids)).toEqual([]);
  });
});

describe.skipIf(!CAN_UNSHARE)('an install whose layer cannot be released cleanly', () => {
  it('is a failed install, not a written layer, when its layer is still busy at the end (lazy unmount)', async () => {
    const work = await scratch('adv-unshare-install-busy');
    const base = await loadBaseImage(BASE_DIR, 'default');
    const { settings } = loadSettings(['--isolation', 'unshare', '--timeout', '60s', '--kill-grace', '3s', '--memory', '512M'], {});
    const layer = path.join(work, 'layer.ext4');
    await makeEmptyExt4(layer, 256 * 1024 * 1024, 0, 'deps-layer');
    const img = await makeJob(work, 'install', 'echo installing > /usr/local/jr-busy; sleep 4; echo R:installed=1');
    const id = `adv-install-busy-${process.pid}`;
    const ran = runJobUnshare({ image: img, base, settings, logPath: path.join(work, 'install.log'), rootLayers: [layer], rootWritable: true,
      caps: INSTALL_CAPS, id });
    // Something on the host (here: a shell's working directory) holds the layer's mount while the install runs.
    const scratchMount = await waitFor('the layer mounted', async () => {
      const mp = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').map((l) => l.split(' ')[4] ?? '')
        .find((m) => m.includes(`/jobrunner-unshare-${id}-`) && m.endsWith('/scratch'));
      return mp && existsSync(path.join(mp, 'upper')) ? mp : null;
    }, 60_000, 50);
    const holder = spawn('sh', ['-c', 'cd "$1" && exec sleep 120', 'sh', path.join(scratchMount, 'upper')], { stdio: 'ignore' });
    try {
      const out = await ran;
      expect(out.end).toBe('crashed');
      expect(out.exitCode).toBeNull();
      expect(out.reason).toMatch(/layer was not released cleanly \(scratch was busy \(detached lazily\)\)/);
      expect(results(await readFile(path.join(work, 'install.log'), 'latin1')).installed).toBe('1'); // the job itself succeeded
    } finally {
      holder.kill('SIGKILL');
    }
    // Once the holder is gone the lazily detached mount goes and the loop device with it.
    await waitFor('the layer released', async () => !(await readFile('/proc/self/mountinfo', 'utf8')).includes(`/jobrunner-unshare-${id}-`) &&
      !(await loopBackings()).includes(layer), 15_000);
  }, 120_000);
});
