// GET /api/v1/jobs/:id/log: the console log as text/plain (Range), or with ?follow=1 live as
// server-sent events. Each event's id is the byte offset just past its line, so a client that
// reconnects with Last-Event-ID (or ?from=OFFSET) resumes exactly where it stopped; the stream
// ends with an `end` event carrying the final status record.
import { once } from 'node:events';
import { JrError } from '../errors.js';
import { followLog } from '../service/log-tail.js';
import { sendFile } from './range.js';
import { idParam } from './schemas.js';
import type { FastifyInstance, HttpCtx } from './types.js';

const KEEPALIVE_MS = 15_000;

export function registerLogRoutes(app: FastifyInstance, ctx: HttpCtx): void {
  const { svc, auth } = ctx;
  app.get<{ Params: { id: string }; Querystring: { follow?: string; from?: number } }>('/api/v1/jobs/:id/log', {
    schema: {
      params: idParam,
      querystring: { type: 'object', additionalProperties: false, properties: { follow: { type: 'string', enum: ['1', '0', 'true', 'false'] }, from: { type: 'integer', minimum: 0 } } },
    },
  }, async (req, reply) => {
    await auth.read(req);
    const id = req.params.id;
    const src = await svc.api.logSource(id);
    if (!src) throw new JrError('JR_E_NOT_FOUND', `no job ${id}`);
    if (req.query.follow !== '1' && req.query.follow !== 'true') {
      if (src.kind === 'none') throw new JrError('JR_E_NOT_FOUND', `job ${id} has no log yet (it is queued)`);
      return sendFile(reply, src.file, 'text/plain; charset=utf-8', req.headers.range);
    }
    const last = req.headers['last-event-id'];
    const from = typeof last === 'string' && /^\d{1,15}$/.test(last) ? Number(last) : req.query.from ?? 0;
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', 'x-accel-buffering': 'no', 'x-content-type-options': 'nosniff' });
    const abort = new AbortController();
    const onClose = (): void => abort.abort();
    res.on('close', onClose);
    const keepalive = setInterval(() => { res.write(': keepalive\n\n'); }, Math.min(KEEPALIVE_MS, ctx.settings.httpIdleTimeout / 2));
    const write = async (s: string): Promise<void> => {
      if (!res.write(s)) await Promise.race([once(res, 'drain'), once(res, 'close')]);
    };
    try {
      res.write('retry: 1000\n\n');
      for await (const ev of followLog({ source: () => svc.api.logSource(id), from, signal: abort.signal })) {
        if (ev.type === 'line') await write(`id: ${ev.offset}\ndata: ${ev.text}\n\n`);
        else await write(`event: end\nid: ${ev.offset}\ndata: ${JSON.stringify(ev.status)}\n\n`);
      }
    } catch (e) {
      req.log.warn({ id, err: (e as Error).message }, 'log follow ended with an error');
    } finally {
      clearInterval(keepalive);
      res.off('close', onClose);
      res.end();
    }
  });
}
