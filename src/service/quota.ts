// Per-token limits on submissions: jobs active at once (queued, running, or still uploading) and
// uploads per minute (a sliding one-minute window). Refusals say when to come back (Retry-After).
import { JrError } from '../errors.js';
import type { TokenRecord } from './tokens.js';

/** In-memory accounting of uploads per token. */
export class Quota {
  private readonly uploading = new Map<string, number>();
  private readonly recent = new Map<string, number[]>();

  /**
   * Admit one upload for `tok`, whose `active` jobs are queued or running now; throws JR_E_RATE
   * (429) when over a limit. The caller must call the returned release() when the upload ends.
   */
  admit(tok: TokenRecord, active: number, now = Date.now()): () => void {
    const inFlight = this.uploading.get(tok.name) ?? 0;
    if (tok.maxActive !== null && active + inFlight >= tok.maxActive) {
      throw new JrError('JR_E_RATE', `token ${tok.name} has ${active + inFlight} jobs queued or running; its limit is ${tok.maxActive}`, { retryAfter: 30 });
    }
    if (tok.ratePerMin !== null) {
      const times = (this.recent.get(tok.name) ?? []).filter((t) => now - t < 60_000);
      if (times.length >= tok.ratePerMin) {
        const retry = Math.max(1, Math.ceil((times[0]! + 60_000 - now) / 1000));
        this.recent.set(tok.name, times);
        throw new JrError('JR_E_RATE', `token ${tok.name} may upload ${tok.ratePerMin} jobs a minute`, { retryAfter: retry });
      }
      times.push(now);
      this.recent.set(tok.name, times);
    }
    this.uploading.set(tok.name, inFlight + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.uploading.set(tok.name, (this.uploading.get(tok.name) ?? 1) - 1);
    };
  }
}
