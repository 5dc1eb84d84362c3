// NAME.json: the status record published beside every result.
import type { FinalStatus } from './state.js';

export interface JobStatus {
  name: string;
  id: string;
  status: FinalStatus;
  exitCode: number | null;
  reason: string;
  submitted: string;
  publishedAs: string;
  attempt: number;
  submittedAt: string;
  startedAt: string | null;
  finishedAt: string;
  durations: { wait: number | null; boot: number | null; run: number | null; compress: number | null };
  input: { bytes: number | null; sha256: string | null };
  /** The published .img.xz: its size, sha256 and the xz preset it was compressed with. */
  output: { bytes: number; sha256: string; preset: number } | null;
  baseImage: { name: string; sha256: string } | null;
  accel: string | null;
  console: { bytes: number; truncated: boolean; lastLine: string } | null;
  version: string;
}

/** Seconds between two ISO timestamps / ms values, rounded to 0.1 s; null when unknown. */
export function seconds(ms: number | null | undefined): number | null {
  return ms === null || ms === undefined ? null : Math.round(ms / 100) / 10;
}
