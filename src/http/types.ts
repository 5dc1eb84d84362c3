// The types the route modules share: fastify's (type-only here: erased at build, so fastify is still
// loaded by src/http/server.ts alone) and the context every route module gets.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Settings } from '../config.js';
import type { Logger } from '../log.js';
import type { Service } from '../service.js';
import type { Auth } from './auth.js';

export type { FastifyInstance, FastifyReply, FastifyRequest };

/** What every route module gets. */
export interface HttpCtx {
  svc: Service;
  settings: Settings;
  auth: Auth;
  log: Logger;
}
