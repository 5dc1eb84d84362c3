// GET /api/v1/jobs/:id/result (the published result, with Range: NAME.img.xz, or NAME.output.tar.xz
// for a job whose manifest asked for "publish": "output") and /output.tar (the job's /job/output as
// a tar stream of output/..., whichever the form: service/output-tar.ts).
import { pipeline } from 'node:stream/promises';
import { resultOutputTar } from '../service/output-tar.js';
import { sendFile } from './range.js';
import { idParam } from './schemas.js';
import type { FastifyInstance, HttpCtx } from './types.js';

export function registerResultRoutes(app: FastifyInstance, ctx: HttpCtx): void {
  const { svc, auth, settings } = ctx;
  app.get<{ Params: { id: string } }>('/api/v1/jobs/:id/result', { schema: { params: idParam } }, async (req, reply) => {
    await auth.read(req);
    const { file, name } = await svc.api.resultFile(req.params.id);
    return sendFile(reply, file, 'application/x-xz', req.headers.range, name);
  });

  app.get<{ Params: { id: string } }>('/api/v1/jobs/:id/output.tar', { schema: { params: idParam } }, async (req, reply) => {
    await auth.read(req);
    const { file, form, status } = await svc.api.resultFile(req.params.id);
    const tar = await resultOutputTar(file, form, settings.maxImageSize);
    reply.hijack();
    reply.raw.writeHead(200, { 'content-type': 'application/x-tar', 'content-disposition': `attachment; filename="${status.publishedAs.replace(/[^A-Za-z0-9._+-]/g, '_')}-output.tar"` });
    try { await pipeline(tar.stream, reply.raw); } catch (e) { req.log.warn({ err: (e as Error).message }, 'output.tar stream ended early'); reply.raw.destroy(); } finally { await tar.cleanup(); }
  });
}
