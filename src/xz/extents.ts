// Where a file's data is, per the kernel: lseek(SEEK_DATA/SEEK_HOLE). Node has no lseek binding,
// so a short Perl helper asks (perl-base is Essential in Debian; ~5 ms for a 4 GiB ext4 image).
// SEEK_DATA is the right question, unlike FIEMAP (filefrag): it accounts for dirty page cache and
// unwritten extents itself. Ranges it calls holes read as zeros, so trusting it is safe; if the
// helper is unavailable we fall back to "all data" and zero detection still finds the holes.
import { spawnLean, type LeanChild } from '../proc.js';

/** A byte range [start, end) of the file. */
export type Range = [start: number, end: number];

export interface ExtentMap { ranges: Range[]; method: 'seek_data' | 'none' }

/** Holes smaller than this between data ranges are read (as zeros) rather than cut around. */
export const MERGE_GAP = 1 << 20;

// Whence 3/4 are SEEK_DATA/SEEK_HOLE on Linux. ENXIO from SEEK_DATA means "no data past here".
// Holes shorter than $ARGV[1] bytes are joined into the data around them (reading them costs less
// than cutting around them), so the output is at most size / gap lines however the holes fall: a
// guest can punch a hole in every other 4 KiB of its disk (discard=unmap).
const SCRIPT = `
use strict; use warnings;
open(my $fh, '<', $ARGV[0]) or die "open: $!\\n";
my $gap = $ARGV[1]; my $size = -s $fh; my $off = 0; my ($s, $e);
while ($off < $size) {
  my $d = sysseek($fh, $off, 3);
  if (!defined $d) { last if $!{ENXIO}; die "SEEK_DATA: $!\\n"; }
  my $h = sysseek($fh, $d, 4);
  defined $h or die "SEEK_HOLE: $!\\n";
  if (defined $e && $d - $e < $gap) { $e = $h; } else { print 0 + $s, " ", 0 + $e, "\\n" if defined $s; ($s, $e) = ($d, $h); }
  $off = $h;
}
print 0 + $s, " ", 0 + $e, "\\n" if defined $s;`;

/** Parse "start end" lines into sorted ranges clipped to [0, size); null if malformed. */
export function parseRanges(out: string, size: number): Range[] | null {
  const ranges: Range[] = [];
  let prev = 0;
  for (const line of out.split('\n')) {
    if (!line.trim()) continue;
    const m = /^(\d+) (\d+)$/.exec(line.trim());
    if (!m) return null;
    const s = Number(m[1]);
    const e = Math.min(Number(m[2]), size);
    if (s >= size) break;
    if (s < prev || e <= s) return null;
    ranges.push([s, e]);
    prev = e;
  }
  return ranges;
}

/** The data ranges of `path` (size `size`), holes under `gap` bytes joined: SEEK_DATA if it works
 *  here, else the whole file. */
export async function dataExtents(path: string, size: number, gap = MERGE_GAP): Promise<ExtentMap> {
  if (!Number.isSafeInteger(gap) || gap < 1) throw new RangeError(`dataExtents: bad gap ${gap}`);
  const all: ExtentMap = { ranges: size > 0 ? [[0, size]] : [], method: 'none' };
  if (size === 0) return all;
  let p: LeanChild;
  try {
    p = spawnLean('perl', ['-e', SCRIPT, '--', path, String(gap)]);
  } catch {
    return all;
  }
  // With the gap joined, the output is bounded (about 25 bytes per `gap` of file); past that, or
  // if perl takes too long, give up on it and read everything.
  const maxOut = 64 + Math.ceil(size / gap) * 48;
  let out = '';
  p.stdout.setEncoding('utf8');
  p.stdout.on('data', (s: string) => { if (out.length + s.length > maxOut) p.kill('SIGKILL'); else out += s; });
  p.stderr.resume();
  const timer = setTimeout(() => p.kill('SIGKILL'), 60_000);
  const r = await p.done.finally(() => clearTimeout(timer));
  if (r.exitCode !== 0) return all;
  const ranges = parseRanges(out, size);
  return ranges ? { ranges, method: 'seek_data' } : all;
}
