// Who is asking: `Authorization: Bearer <token>` checked against the token store (constant time,
// service/tokens.ts). Submitting and cancelling always need a token; reading is open when the
// listener is loopback (or --public-read), and needs any valid token otherwise.
import { JrError } from '../errors.js';
import type { TokenRecord, TokenStore } from '../service/tokens.js';
import type { FastifyRequest } from 'fastify'; // type only: erased at build

/** The presented bearer token, or null when there is no Authorization header. */
function bearer(req: FastifyRequest): string | null {
  const h = req.headers.authorization;
  if (h === undefined) return null;
  const m = /^Bearer ([A-Za-z0-9_\-.~+/=]{1,200})$/.exec(h);
  if (!m) throw new JrError('JR_E_AUTH', 'the Authorization header must be "Bearer <token>"');
  return m[1]!;
}

/** Authentication and the read policy of one listener. */
export class Auth {
  constructor(private readonly tokens: TokenStore, readonly openRead: boolean) {}

  /** The token of this request; 401 without one or with an unknown one. */
  async require(req: FastifyRequest): Promise<TokenRecord> {
    const t = bearer(req);
    if (t === null) throw new JrError('JR_E_AUTH', 'this needs a token: send "Authorization: Bearer <token>" (jobrunner token add NAME makes one)');
    const rec = await this.tokens.verify(t);
    if (!rec) throw new JrError('JR_E_AUTH', 'unknown or revoked token');
    return rec;
  }

  /** Reads: open on loopback / --public-read; elsewhere any valid token. A bad token is 401 either way. */
  async read(req: FastifyRequest): Promise<TokenRecord | null> {
    if (req.headers.authorization !== undefined) return this.require(req);
    if (this.openRead) return null;
    return this.require(req);
  }
}
