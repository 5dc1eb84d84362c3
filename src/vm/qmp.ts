// A minimal QMP (qemu machine protocol) client over qemu's unix socket: connect (qemu creates the
// socket as it starts, so connecting retries until then), negotiate, run commands one at a time.
// Only what templates and restores need; replies are matched by id, events are delivered to a
// listener. Everything qemu sends is size-capped per line: a confused qemu cannot grow our memory.
import { connect, type Socket } from 'node:net';
import { JrError } from '../errors.js';

const MAX_LINE = 1 << 20;

export interface QmpEvent { event: string; data?: Record<string, unknown> }

/** One QMP connection; `execute` throws JrError('JR_E_TEMPLATE') with qemu's own error text. */
export class Qmp {
  private buf = '';
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private closedWith: Error | null = null;
  onEvent: ((ev: QmpEvent) => void) | null = null;

  private constructor(private readonly sock: Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => this.feed(chunk));
    const fail = (e: Error): void => {
      this.closedWith ??= e;
      for (const w of this.waiting.values()) w.reject(this.closedWith);
      this.waiting.clear();
    };
    sock.on('error', fail);
    sock.on('close', () => fail(new JrError('JR_E_TEMPLATE', 'qemu closed its QMP socket')));
  }

  /** Connect to `path`, retrying until `deadline` (epoch ms) while qemu has not created it yet. */
  static async connect(path: string, deadline: number, signal?: AbortSignal): Promise<Qmp> {
    for (;;) {
      try {
        const sock = await new Promise<Socket>((resolve, reject) => {
          const s = connect(path);
          s.once('connect', () => { s.removeAllListeners('error'); resolve(s); });
          s.once('error', reject);
        });
        const qmp = new Qmp(sock);
        await qmp.greeting();
        await qmp.execute('qmp_capabilities');
        return qmp;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if ((code !== 'ENOENT' && code !== 'ECONNREFUSED') || Date.now() > deadline || signal?.aborted) {
          throw new JrError('JR_E_TEMPLATE', `cannot reach qemu's QMP socket ${path}: ${(e as Error).message}`, { cause: e });
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }

  private greetingWaiter: ((v: unknown) => void) | null = null;
  private greeting(): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.greetingWaiter = resolve;
      this.waiting.set(0, { resolve, reject });
    });
  }

  private feed(chunk: string): void {
    this.buf += chunk;
    if (this.buf.length > MAX_LINE && !this.buf.includes('\n')) { this.sock.destroy(new JrError('JR_E_TEMPLATE', 'QMP line too long')); return; }
    let nl;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl).trim();
      this.buf = this.buf.slice(nl + 1);
      if (!line) continue;
      let msg: Record<string, unknown>;
      try { msg = JSON.parse(line) as Record<string, unknown>; } catch { continue; }
      if ('QMP' in msg && this.greetingWaiter) { this.waiting.delete(0); this.greetingWaiter(msg); this.greetingWaiter = null; continue; }
      if ('event' in msg) { this.onEvent?.(msg as unknown as QmpEvent); continue; }
      const id = typeof msg.id === 'number' ? msg.id : -1;
      const w = this.waiting.get(id);
      if (!w) continue;
      this.waiting.delete(id);
      if ('error' in msg) {
        const err = msg.error as { class?: string; desc?: string };
        w.reject(new JrError('JR_E_TEMPLATE', `qemu refused ${String(msg.id)}: ${err.desc ?? err.class ?? 'unknown error'}`));
      } else w.resolve(msg.return);
    }
  }

  /** Run one QMP command and return its `return` value. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject: (e) => reject(new JrError('JR_E_TEMPLATE', `${command}: ${e.message}`, { cause: e })) });
      this.sock.write(JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id }) + '\n');
    });
  }

  /** Poll query-status until qemu's run state is one of `want` (or `deadline` passes). */
  async waitStatus(want: string[], deadline: number, fail: string[] = []): Promise<string> {
    for (;;) {
      const st = await this.execute<{ status: string }>('query-status');
      if (want.includes(st.status)) return st.status;
      if (fail.includes(st.status)) throw new JrError('JR_E_TEMPLATE', `qemu is in state '${st.status}'`);
      if (Date.now() > deadline) throw new JrError('JR_E_TEMPLATE', `qemu still in state '${st.status}' (waiting for ${want.join('/')})`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  close(): void {
    this.sock.destroy();
  }
}
