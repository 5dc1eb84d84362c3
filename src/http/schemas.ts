// JSON schemas shared by the routes (fastify validates params and query strings with them).

/** A job id as the service makes them (spool/claim.ts newJobId): nothing else reaches a path. */
export const idParam = {
  type: 'object', required: ['id'], additionalProperties: false,
  properties: { id: { type: 'string', pattern: '^[0-9a-z]{6,12}-[0-9a-f]{8}$' } },
} as const;

/** A job name for uploads: becomes a file name, so a conservative character set. */
export const NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$';

/** The error shape, for response documentation. */
export const errorSchema = {
  type: 'object', properties: { error: { type: 'object', properties: { code: { type: 'string' }, message: { type: 'string' } } } },
} as const;
