// Parsing of human units used by config and CLIs: durations (90s, 20m, 2h) and sizes (512M, 2G).

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/;
const DUR_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parse "90s", "20m", "2h", "1.5h", "500ms" or a bare number of seconds into milliseconds; null if malformed. */
export function parseDuration(v: string | number): number | null {
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 ? v * 1000 : null;
  const m = DURATION.exec(v.trim());
  if (!m) return null;
  return Math.round(Number(m[1]) * DUR_MS[m[2] ?? 's']!);
}

const SIZE = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)?$/i;
const SIZE_MUL: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** Parse "512M", "2G", "64k", "1.5GiB" or a bare byte count into bytes (binary units); null if malformed. */
export function parseSize(v: string | number): number | null {
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 ? Math.floor(v) : null;
  const m = SIZE.exec(v.trim());
  if (!m) return null;
  return Math.floor(Number(m[1]) * SIZE_MUL[m[2]!.toLowerCase()]!);
}

/** Format a byte count for humans: 1.5 GiB, 300 MiB, 12 KiB, 7 B. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0; let x = n;
  while (x >= 1024 && i < units.length - 1) { x /= 1024; i++; }
  return i === 0 ? `${n} B` : `${x < 10 ? x.toFixed(1) : Math.round(x)} ${units[i]}`;
}

/** Format milliseconds as a short duration: 950ms, 12.3s, 4m05s, 2h00m. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.floor(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}
