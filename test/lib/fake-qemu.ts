// A stand-in for qemu-system-x86_64 that speaks our guest's console protocol (src/vm/markers.ts,
// guest-config/construir) without booting anything: the fault paths of the adversarial suite and
// the whole no-qemu service tier (test/service) run on it. Nothing here pretends to test qemu.
import { chmod, writeFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * What the fake does, chosen per job by the string FAKEQEMU-MODE=<mode> inside the job image (read
 * through fd 5, the read-only job disk), else by $FAKEQEMU_MODE, else by the default baked in:
 *   ok             start, a line of output, exit=0, end            -> succeeded
 *   exit-N         start, exit=N, end                              -> failed, exitCode N
 *   run-hang       start, then nothing until killed                -> timeout
 *   slow           start, sleep FAKEQEMU-SLEEP (default 2 s), exit=0, end (a job that is running)
 *   no-exit        start, then qemu exits 0 without exit=          -> failed (guest stopped)
 *   bad-image      start, bad-image=mount-failed                   -> rejected
 *   initramfs-fail the initramfs's own failure line, no start     -> boot-failed
 *   hang           never prints anything (a guest that never boots) -> boot-failed
 *   crash          qemu's own start-up failure on stderr, exit 1   -> boot-failed
 *   segv           qemu dies of SIGSEGV before the guest starts    -> boot-failed
 *   stubborn       start, ignores SIGTERM                          -> timeout after SIGKILL
 *   forker         leaves a child behind, never boots              -> boot-failed
 *   stderr-flood   10 MB on stderr, exit 1; console-flood: 3 MB on the console, then exit=0
 *   report         prints uid, privileges, fds and argv as REPORT lines, exit=0
 * Every start appends "<mode> <nonce>" to fake-qemu.calls beside the script (mode 0666, so a qemu
 * dropped to the unprivileged user can write it): tests count which jobs reached a qemu.
 */
export const FAKE_QEMU_MODES = ['ok', 'exit-N', 'run-hang', 'slow', 'no-exit', 'bad-image', 'initramfs-fail', 'hang', 'crash', 'segv',
  'stubborn', 'forker', 'stderr-flood', 'console-flood', 'report'] as const;

/** Write the fake qemu into `dir` (returns its path; its calls log is `fakeQemuCalls(dir)`). */
export async function fakeQemu(dir: string, defaultMode = ''): Promise<string> {
  const p = path.join(dir, 'fake-qemu');
  const calls = fakeQemuCalls(dir);
  await writeFile(calls, '');
  await chmod(calls, 0o666);
  if (!/^[a-z0-9-]*$/.test(defaultMode)) throw new Error(`fake qemu: bad default mode ${JSON.stringify(defaultMode)}`);
  await writeFile(p, `#!/bin/bash
nonce=$(printf '%s\\n' "$@" | sed -n 's/.*construir\\.nonce=\\([A-Za-z0-9]*\\).*/\\1/p' | head -n1)
image=$(grep -a -o -m2 -E 'FAKEQEMU-(MODE|SLEEP)=[a-z0-9.-]*' <&5 | head -n2)
mode=$(printf '%s\\n' "$image" | sed -n 's/^FAKEQEMU-MODE=//p' | head -n1)
pause=$(printf '%s\\n' "$image" | sed -n 's/^FAKEQEMU-SLEEP=//p' | head -n1)
mode=\${mode:-\${FAKEQEMU_MODE:-${defaultMode}}}
echo "$mode $nonce" >> '${calls}' 2>/dev/null
mark() { printf '\\n@@construir:%s:%s@@\\n' "$nonce" "$1"; }
case "$mode" in
  ok) mark start; echo "fake job ran"; mark exit=0; mark end; exit 0 ;;
  exit-[0-9]*) mark start; echo "fake job exits \${mode#exit-}"; mark "exit=\${mode#exit-}"; mark end; exit 0 ;;
  run-hang) mark start; echo "fake job hangs"; exec sleep 100000 ;;
  slow) mark start; echo "fake job works"; sleep "\${pause:-2}"; mark exit=0; mark end; exit 0 ;;
  no-exit) mark start; echo "fake guest powers off early"; exit 0 ;;
  bad-image) mark start; echo "construir: cannot mount the job image"; mark bad-image=mount-failed; exit 0 ;;
  initramfs-fail) printf '\\n@@construir-initramfs:no-root-disk@@\\n'; exit 0 ;;
  hang) exec sleep 100000 ;;
  crash) echo "fake-qemu: could not initialise the machine" >&2; exit 1 ;;
  segv) kill -SEGV $$ ;;
  stubborn) trap '' TERM; mark start; echo "ignoring SIGTERM"; while :; do sleep 1; done ;;
  forker) sleep 40 & echo "left a child $!"; exec sleep 100000 ;;
  stderr-flood) head -c 10000000 /dev/zero | tr '\\0' E >&2; exit 1 ;;
  console-flood) mark start; head -c 3000000 /dev/zero | tr '\\0' x; mark exit=0; mark end; exit 0 ;;
  report)
    mark start
    echo "REPORT uid=$(id -u) gid=$(id -g) groups=$(id -G)"
    grep -E '^(NoNewPrivs|CapEff|CapBnd|CapPrm):' /proc/$$/status | sed 's/^/REPORT /'
    for fd in /proc/$$/fd/*; do n=\${fd##*/}; echo "REPORT fd $n $(readlink "$fd") $(sed -n 's/^flags:[[:space:]]*//p' /proc/$$/fdinfo/$n 2>/dev/null)"; done
    echo "REPORT argv $*"
    mark exit=0; mark end; exit 0 ;;
  *) echo "fake-qemu: no mode in the job image" >&2; exit 2 ;;
esac
`);
  await chmod(p, 0o755);
  return p;
}

/** The file where the fake qemu in `dir` logs one "<mode> <nonce>" line per start. */
export function fakeQemuCalls(dir: string): string {
  return path.join(dir, 'fake-qemu.calls');
}
