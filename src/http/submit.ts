// POST /api/v1/jobs?name=NAME: the image as the raw body, streamed into queue/ (service/uploads.ts).
// Refused before a byte is read when the declared size is over the cap (413), the disk would
// drop below the reserve (507) or the token is over its limits (429 + Retry-After).
import { JrError } from '../errors.js';
import { Quota } from '../service/quota.js';
import { jobUrls } from './jobs.js';
import { uploadBytes } from './metrics.js';
import { NAME_PATTERN } from './schemas.js';
import type { FastifyInstance, HttpCtx } from './types.js';

export function registerSubmit(app: FastifyInstance, ctx: HttpCtx): void {
  const { svc, auth, settings } = ctx;
  const quota = new Quota();
  app.post<{ Querystring: { name: string } }>('/api/v1/jobs', {
    schema: {
      querystring: { type: 'object', required: ['name'], additionalProperties: false, properties: { name: { type: 'string', pattern: NAME_PATTERN } } },
    },
  }, async (req, reply) => {
    const tok = await auth.require(req);
    if (svc.isStopping) throw new JrError('JR_E_UNAVAILABLE', 'the service is stopping; submit again later');
    const cl = req.headers['content-length'];
    const declared = cl === undefined ? null : Number(cl);
    if (declared !== null && !Number.isSafeInteger(declared)) throw new JrError('JR_E_REQUEST', 'bad Content-Length');
    const cap = Math.min(tok.maxImageSize ?? Infinity, settings.maxImageSize);
    const limits = { cap, reserve: settings.diskReserve };
    await svc.uploads.precheck(declared, limits);
    const active = (await svc.api.list({ token: tok.name, state: ['queued', 'running'], limit: 1, offset: 0 })).total;
    const release = quota.admit(tok, active);
    try {
      const raw = req.raw;
      const rec = await svc.uploads.receive(raw, { name: req.query.name, owner: tok.name, limits, declared, complete: () => raw.complete, onBytes: (n) => uploadBytes.inc(n) });
      svc.api.uploaded(rec);
      svc.events.emit('upload', rec.id);
      ctx.log.info({ id: rec.id, name: rec.name, token: tok.name, bytes: rec.bytes }, 'job uploaded');
      const urls = jobUrls(rec.id);
      return reply.code(201).header('location', urls.self).send({ id: rec.id, name: rec.name, state: 'queued', bytes: rec.bytes, compressed: rec.compressed, urls });
    } catch (e) {
      // Refused mid-stream: say so and close, rather than read the rest of a body we will not keep.
      if (!req.raw.complete) reply.header('connection', 'close');
      throw e;
    } finally {
      release();
    }
  });
}
