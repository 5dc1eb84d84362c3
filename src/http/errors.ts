// The one error shape of the API, { error: { code: 'JR_E_…', message } }, and the HTTP status
// each JR_E_* code maps to. Fastify's own errors (validation, media type, body too large) are
// turned into JrErrors here so clients only ever match on JR_E_* codes.
import { JrError, isJrError, messageOf, type ErrorCode } from '../errors.js';

const STATUS: Partial<Record<ErrorCode, number>> = {
  JR_E_REQUEST: 400, JR_E_USAGE: 400, JR_E_INPUT: 400, JR_E_AUTH: 401, JR_E_FORBIDDEN: 403, JR_E_NOT_FOUND: 404,
  JR_E_CONFLICT: 409, JR_E_TOO_LARGE: 413, JR_E_RANGE: 416, JR_E_RATE: 429, JR_E_UNAVAILABLE: 503, JR_E_NO_SPACE: 507,
};

interface FastifyishError { code?: string; statusCode?: number; validation?: unknown }

/** Any thrown value as a JrError: ours pass through, fastify's get the matching JR_E_* code. */
export function toJrError(err: unknown): JrError {
  if (isJrError(err)) return err;
  const f = err as FastifyishError;
  if (typeof f.code === 'string' && f.code.startsWith('JR_E_')) return new JrError(f.code as ErrorCode, messageOf(err));
  if (f.validation) return new JrError('JR_E_REQUEST', `invalid request: ${messageOf(err)}`);
  if (f.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return new JrError('JR_E_TOO_LARGE', messageOf(err));
  if (f.statusCode === 503) return new JrError('JR_E_UNAVAILABLE', 'the service is stopping');
  if (typeof f.statusCode === 'number' && f.statusCode >= 400 && f.statusCode < 500) return new JrError('JR_E_REQUEST', messageOf(err));
  return new JrError('JR_E_INTERNAL', messageOf(err));
}

/** The HTTP status for a JrError (fastify's own 4xx status kept for JR_E_REQUEST, e.g. 415). */
export function httpStatusOf(e: JrError, original?: unknown): number {
  const own = (original as FastifyishError | undefined)?.statusCode;
  if (e.code === 'JR_E_REQUEST' && typeof own === 'number' && own >= 400 && own < 500) return own;
  return STATUS[e.code] ?? 500;
}

/** The JSON body of an error response. */
export function errorBody(e: JrError): { error: { code: ErrorCode; message: string } } {
  return { error: { code: e.code, message: e.message } };
}
