// The HTTP API and dashboard inside the service (Fastify 5; the only file that imports fastify).
// Routes live beside it (src/http/*.ts) and only call the service's side (Service, JobsApi,
// Uploads): nothing here touches spool files. Every route validates its input with a JSON schema;
// every error leaves as { error: { code: 'JR_E_…', message } } with the status its code maps to.
import net from 'node:net';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply } from 'fastify';
import type { Settings } from '../config.js';
import { JrError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Service } from '../service.js';
import { Auth } from './auth.js';
import { errorBody, httpStatusOf, toJrError } from './errors.js';
import { registerJobRoutes } from './jobs.js';
import { registerLogRoutes } from './log.js';
import { registerMetrics } from './metrics.js';
import { registerResultRoutes } from './results.js';
import { registerStatic } from './static.js';
import { registerSubmit } from './submit.js';

import type { HttpCtx } from './types.js';

/** Parse --listen HOST:PORT (IPv6 in brackets). */
export function parseListen(v: string): { host: string; port: number } {
  const i = v.lastIndexOf(':');
  return { host: v.slice(0, i).replace(/^\[(.*)\]$/, '$1'), port: Number(v.slice(i + 1)) };
}

/** Build the app (routes, schemas, error shape) without listening: tests and startHttp use it. */
export async function buildApp(svc: Service, settings: Settings, log: Logger, loopback: boolean): Promise<FastifyInstance> {
  const app = Fastify({
    // Per-request lines stay out of the service log (warnings and errors only); routes log what matters.
    loggerInstance: log.child({ part: 'http' }, { level: 'warn' }) as unknown as FastifyBaseLogger,
    // A socket silent this long is closed: a slow-drip upload cannot hold a connection forever
    // (SSE streams send a comment every 15 s, or sooner, to stay under it).
    connectionTimeout: settings.httpIdleTimeout,
    keepAliveTimeout: 10_000,
    bodyLimit: 64 * 1024, // JSON bodies only; uploads are streamed and capped by the upload route
    routerOptions: { maxParamLength: 100 },
    return503OnClosing: true,
    forceCloseConnections: true, // stop() must not wait for log followers
    // Errors the router raises before any route (a malformed URL, a path parameter over its
    // limit) get the same { error: { code } } shape as everything else.
    frameworkErrors: (err, _req, res) => {
      const e = toJrError(err);
      const reply = res as unknown as FastifyReply;
      void reply.code(httpStatusOf(e, err)).type('application/json').send(errorBody(e));
    },
    ajv: { customOptions: { removeAdditional: false, coerceTypes: true, allErrors: false } },
  });
  app.server.headersTimeout = Math.min(20_000, settings.httpIdleTimeout);
  app.server.requestTimeout = 0; // uploads may take long; idleness is bounded by connectionTimeout
  // Uploads are raw bodies read by the route as a stream: hand the stream through unread.
  app.addContentTypeParser(['application/octet-stream', 'application/x-xz'], (_req, payload, done) => { done(null, payload); });
  app.setErrorHandler((err, req, reply) => {
    const e = toJrError(err);
    const status = httpStatusOf(e, err);
    if (status >= 500 && status !== 503 && status !== 507) req.log.error({ err: e.message, url: req.url }, 'request failed');
    if (e.context.retryAfter !== undefined) void reply.header('retry-after', String(e.context.retryAfter));
    if (reply.raw.headersSent) { reply.raw.destroy(); return; }
    void reply.code(status).type('application/json').send(errorBody(e));
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send(errorBody(toJrError(Object.assign(new Error(`no route ${req.method} ${req.url.split('?')[0]}`), { code: 'JR_E_NOT_FOUND' }))));
  });
  const ctx: HttpCtx = { svc, settings, auth: new Auth(svc.tokens, loopback || settings.publicRead), log };
  await registerMetrics(app, ctx);
  registerJobRoutes(app, ctx);
  registerSubmit(app, ctx);
  registerLogRoutes(app, ctx);
  registerResultRoutes(app, ctx);
  registerStatic(app, ctx);
  return app;
}

/** Start listening on --listen; `close` stops accepting and ends open streams. */
export async function startHttp(svc: Service, settings: Settings, log: Logger): Promise<{ close: () => Promise<void>; address: string }> {
  const { host, port } = parseListen(settings.listen);
  const loopback = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/.test(host);
  const app = await buildApp(svc, settings, log, loopback);
  const address = await app.listen({ host, port }).catch(async (e: unknown) => { await app.close(); throw listenError(settings.listen, e); });
  return { address, close: () => app.close() };
}

/** JR_E_LISTEN for a --listen address that cannot be bound (in use, not this machine's, privileged). */
function listenError(listen: string, e: unknown): JrError {
  const why: Record<string, string> = { EADDRINUSE: 'the address is in use', EADDRNOTAVAIL: 'the address is not one of this machine\'s', EACCES: 'the port needs privilege', ENOTFOUND: 'the host name does not resolve' };
  const code = (e as NodeJS.ErrnoException).code ?? '';
  return new JrError('JR_E_LISTEN', `cannot listen on ${listen}: ${why[code] ?? (e as Error).message} (give another with --listen HOST:PORT, or --listen off)`, { cause: e });
}

/** Bind and release --listen once, before the service claims any job: a taken address fails start-up at once. */
export async function checkListen(settings: Settings): Promise<void> {
  const { host, port } = parseListen(settings.listen);
  if (port === 0) return;
  const srv = net.createServer();
  await new Promise<void>((resolve, reject) => { srv.once('error', reject); srv.listen({ host, port, exclusive: true }, resolve); })
    .catch((e: unknown) => { throw listenError(settings.listen, e); });
  await new Promise<void>((r) => srv.close(() => r()));
}
