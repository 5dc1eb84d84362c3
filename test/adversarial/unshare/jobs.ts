// The hostile jobs of the unshare run: each prints `R:key=value` lines that the cases read back
// from its published console log. Escape attempts report what the kernel said, never assume it.
import { execFile } from 'node:child_process';
import { chmod, copyFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { jobTree, runProc } from '../../helpers.js';
import { job } from '../lib/fixtures.js';

const exec = promisify(execFile);

/** Host paths and a host process the escape jobs aim at. */
export interface Targets { secret: string; hostDir: string; hostPid: number; tag: string }

/** Shell: run "$@" quietly and print R:name=ok|denied. */
const TRY = 'try() { n=$1; shift; if "$@" >/dev/null 2>&1; then echo "R:$n=ok"; else echo "R:$n=denied"; fi; }';

export function scripts(t: Targets): Record<string, string> {
  return {
    escape: `${TRY}
try write-etc sh -c 'echo x > /etc/jr-escape-${t.tag}'
try write-root sh -c 'echo x > /jr-escape-${t.tag}'
try write-hostdir sh -c 'mkdir -p ${t.hostDir} && echo pwned > ${t.hostDir}/pwned-${t.tag}'
test -e ${t.secret} && echo R:secret=visible || echo R:secret=absent
test -e /work && echo R:work=visible || echo R:work=absent
echo "R:pid1=$(tr '\\0' ' ' < /proc/1/cmdline | cut -c1-5)"
echo "R:procs=$(ls /proc | grep -c '^[0-9]')"
test -e /dev/vda && echo R:disk=visible || echo R:disk=absent
test -e /sys/kernel && echo R:sys=visible || echo R:sys=absent
try kill-host kill -KILL ${t.hostPid}
test -e /proc/${t.hostPid} && echo R:hostproc=visible || echo R:hostproc=absent
try ptrace perl -e 'exit(syscall(101, 16, ${t.hostPid}, 0, 0) == -1 ? 1 : 0)'
try ptrace-init perl -e 'exit(syscall(101, 16, 1, 0, 0) == -1 ? 1 : 0)'
try mount mount -t tmpfs none /mnt
try remount mount -o remount,rw /
try mknod mknod /tmp/null c 1 3
try chroot chroot / true
try clock date -s 2000-01-01
try hostname hostname evil
try modprobe modprobe dummy
try insmod sh -c 'insmod $(find /lib/modules -name "dummy.ko*" | head -1)'
try reboot sh -c 'echo b > /proc/sysrq-trigger'
try net-link ip link add d0 type dummy
try tcp bash -c 'exec 3<>/dev/tcp/1.1.1.1/80'
echo "R:links=$(ip -o link | awk '{print $2}' | tr -d ':' | tr '\\n' ' ')"
try setuid-su sh -c 'test -u /bin/su'
echo "R:uid=$(id -u)"
echo "R:capeff=$(grep CapEff /proc/self/status | awk '{print $2}')"
try userns unshare -U true
try userns-root unshare -Ur true
try userns-clone perl -e 'exit(syscall(56, 0x10000000 | 17, 0, 0, 0, 0) == -1 ? 1 : 0)'
`,
    net: `${TRY}
try tcp bash -c 'exec 3<>/dev/tcp/1.1.1.1/80'
try dns getent hosts deb.debian.org
echo "R:links=$(ip -o link | awk '{print $2}' | tr -d ':' | tr '\\n' ' ')"
`,
    // bash, so the job keeps control without forking while the bomb holds every pid it may have:
    // the bomb has its own process group (set -m), waited for with a busy loop, killed by a builtin.
    forkbomb: `exec bash -c 'set -m; ( bomb() { bomb | bomb & }; bomb ) 2>/dev/null & g=$!; set +m
max=0; while [ $SECONDS -lt 6 ]; do p=(/proc/[0-9]*); [ \${#p[@]} -gt $max ] && max=\${#p[@]}; done
echo R:peak=$max
for i in 1 2 3 4 5 6 7 8 9 10; do kill -KILL -- -$g 2>/dev/null; done
echo R:survived=1'`,
    memhog: `tail /dev/zero; echo "R:rc=$?"
echo "R:after=alive"`,
    filljob: `dd if=/dev/zero of=/job/fill bs=1M 2>/dev/null; echo "R:fill=$?"
rm -f /job/fill; echo R:done=1`,
    fillroot: `dd if=/dev/zero of=/var/fill bs=1M 2>/dev/null; echo "R:root=$?"
dd if=/dev/zero of=/tmp/fill bs=1M 2>/dev/null; echo "R:tmp=$?"
echo R:done=1`,
    flood: `head -c 2000000 /dev/urandom
yes | head -c 300000 | tr -d '\\n'
echo
echo R:flood=done`,
    ignoreterm: `trap '' TERM
(trap '' TERM; setsid sh -c 'trap "" TERM; while :; do sleep 1; done' &)
echo R:ignoring=1
while :; do sleep 1; done`,
    killinit: 'echo R:killing=1\nkill -KILL -1\nsleep 30',
    fakemarkers: 'printf "\\n@@construir:00000000:exit=0@@\\n@@construir:00000000:end@@\\n"\nsleep 600',
  };
}

/** A job image holding a set-uid root binary, a device node and a FIFO (made as root with mke2fs -d). */
export async function craftedSpecials(work: string): Promise<string> {
  const tree = await jobTree(path.join(work, 'specials.tree'),
    'test -u /job/suid && echo R:suid=set || echo R:suid=clear\n' +
    'test -e /job/devnull && echo R:dev=present || echo R:dev=absent\n' +
    'test -e /job/fifo && echo R:fifo=present || echo R:fifo=absent\n' +
    'test -L /job/link && echo "R:link=$(readlink /job/link)"\n' +
    'cat /job/link >/dev/null 2>&1 && echo R:linkread=ok || echo R:linkread=denied');
  await copyFile('/bin/true', path.join(tree, 'suid'));
  await chmod(path.join(tree, 'suid'), 0o4755);
  await exec('mknod', [path.join(tree, 'devnull'), 'c', '1', '3']);
  await exec('mkfifo', [path.join(tree, 'fifo')]);
  await exec('ln', ['-s', '/etc/shadow', path.join(tree, 'link')]);
  const img = path.join(work, 'specials.img');
  const r = await runProc('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', tree, img, '32M'], { env: { PATH: `${process.env.PATH}:/usr/sbin` } });
  if (r.code !== 0) throw new Error(r.stderr);
  return img;
}

/** Every hostile image, by queue name. */
export async function buildAll(work: string, t: Targets): Promise<Map<string, string>> {
  await mkdir(work, { recursive: true });
  const out = new Map<string, string>();
  for (const [name, body] of Object.entries(scripts(t))) out.set(`${name}.img`, await job(work, name, body, {}, name === 'filljob' ? '32M' : '16M'));
  out.set('specials.img', await craftedSpecials(work));
  return out;
}

/** The R:key=value lines of a console log. */
export function results(log: string): Record<string, string> {
  const r: Record<string, string> = {};
  for (const m of log.matchAll(/^R:([\w-]+)=(.*)$/gm)) r[m[1]!] = m[2]!;
  return r;
}
