// GET /api/v1/jobs (listing with filters and paging), GET /api/v1/jobs/:id (one job, live while
// it runs), DELETE /api/v1/jobs/:id (cancel: the job's own token only), GET /api/v1/machine.
import { JrError } from '../errors.js';
import type { JobEvent } from '../job/lifecycle.js';
import type { ViewState } from '../service/api.js';
import type { FinalStatus } from '../spool/record.js';
import { idParam } from './schemas.js';
import type { FastifyInstance, HttpCtx } from './types.js';

const STATES = ['queued', 'running', 'finished'];
const STATUSES = ['succeeded', 'failed', 'timeout', 'boot-failed', 'rejected', 'error', 'cancelled'];

/** The URLs of job `id`, relative to the server. */
export function jobUrls(id: string): Record<string, string> {
  const b = `/api/v1/jobs/${id}`;
  return { self: b, log: `${b}/log`, follow: `${b}/log?follow=1`, result: `${b}/result`, outputTar: `${b}/output.tar`, page: `/job.html?id=${id}` };
}

export function registerJobRoutes(app: FastifyInstance, ctx: HttpCtx): void {
  const { svc, auth } = ctx;
  app.get<{ Querystring: { state?: string; status?: string; token?: string; limit: number; offset: number } }>('/api/v1/jobs', {
    schema: {
      querystring: {
        type: 'object', additionalProperties: false,
        properties: {
          state: { type: 'string', pattern: `^(${STATES.join('|')})(,(${STATES.join('|')}))*$` },
          status: { type: 'string', pattern: `^(${STATUSES.join('|')})(,(${STATUSES.join('|')}))*$` },
          token: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' },
          limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 },
          offset: { type: 'integer', minimum: 0, maximum: 10_000_000, default: 0 },
        },
      },
    },
  }, async (req) => {
    await auth.read(req);
    const q = req.query;
    const { jobs, total } = await svc.api.list({
      state: q.state?.split(',') as ViewState[] | undefined, status: q.status?.split(',') as FinalStatus[] | undefined,
      token: q.token, limit: q.limit, offset: q.offset,
    });
    const next = q.offset + jobs.length < total ? q.offset + jobs.length : null;
    return { total, offset: q.offset, limit: q.limit, next, jobs: jobs.map((j) => ({ ...j, urls: j.id ? jobUrls(j.id) : null })) };
  });

  app.get<{ Params: { id: string } }>('/api/v1/jobs/:id', { schema: { params: idParam } }, async (req) => {
    await auth.read(req);
    const j = await svc.api.get(req.params.id);
    if (!j) throw new JrError('JR_E_NOT_FOUND', `no job ${req.params.id}`);
    return { ...j, urls: jobUrls(req.params.id) };
  });

  app.delete<{ Params: { id: string } }>('/api/v1/jobs/:id', { schema: { params: idParam } }, async (req) => {
    const tok = await auth.require(req);
    const id = req.params.id;
    const owner = svc.api.ownerOf(id);
    if (owner === null && !(await svc.api.get(id))) throw new JrError('JR_E_NOT_FOUND', `no job ${id}`);
    if (owner !== tok.name) throw new JrError('JR_E_FORBIDDEN', `job ${id} was not submitted with this token (token ${tok.name}); only its own token may cancel it`);
    const r = await svc.cancel(id, `cancelled through the API (token ${tok.name})`);
    if (r === 'finished') throw new JrError('JR_E_CONFLICT', `job ${id} has finished already`);
    if (r === 'unknown') throw new JrError('JR_E_NOT_FOUND', `job ${id} is neither queued nor running`);
    const j = await svc.api.get(id);
    return { ...j, urls: jobUrls(id) };
  });

  // Job events as server-sent events (the dashboard refreshes on each): started, finished, ...
  app.get('/api/v1/events', async (req, reply) => {
    await auth.read(req);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', 'x-accel-buffering': 'no' });
    res.write('retry: 2000\n\n');
    const send = (ev: { type: string; id: string }): void => { res.write(`event: message\ndata: ${JSON.stringify({ type: ev.type, id: ev.id })}\n\n`); };
    const onJob = (ev: JobEvent): void => { if (ev.type !== 'step') send(ev); };
    const onUpload = (id: string): void => send({ type: 'uploaded', id });
    svc.events.on('job', onJob);
    svc.events.on('upload', onUpload);
    const keepalive = setInterval(() => res.write(': keepalive\n\n'), Math.min(15_000, ctx.settings.httpIdleTimeout / 2));
    res.on('close', () => { clearInterval(keepalive); svc.events.off('job', onJob); svc.events.off('upload', onUpload); });
  });

  app.get('/api/v1/machine', async (req) => {
    await auth.read(req);
    const [m, sum] = await Promise.all([svc.machine(), svc.api.summary()]);
    return { ...m, jobs: sum };
  });
}
