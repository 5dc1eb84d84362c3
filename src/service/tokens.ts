// API tokens: a random secret is shown once, only its sha256 is kept, in a 0600 JSON file the
// service re-reads when it changes (so `token add` and `token revoke` take effect at once).
// Verification hashes the presented token and compares it with every stored hash in constant
// time, so neither the match nor its position leaks through timing.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, open, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { JrError } from '../errors.js';
import { fsyncPath } from '../fsutil.js';

export interface TokenLimits {
  /** Jobs of this token queued or running at once (null: no limit). */
  maxActive: number | null;
  /** Largest upload in bytes (null: the service's --max-image-size). */
  maxImageSize: number | null;
  /** Uploads per minute (null: no limit). */
  ratePerMin: number | null;
}

export interface TokenRecord extends TokenLimits {
  name: string;
  sha256: string;
  createdAt: string;
}

interface TokenFile { version: 1; tokens: TokenRecord[] }

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** True when `name` is an acceptable token name (shown in listings and metrics labels). */
export function isTokenName(name: string): boolean {
  return NAME_RE.test(name);
}

const hash = (token: string): Buffer => createHash('sha256').update(token, 'utf8').digest();

/** Read the token file; a missing file is an empty store, anything else malformed is an error. */
export async function readTokens(file: string): Promise<TokenRecord[]> {
  let text: string;
  try { text = await readFile(file, 'utf8'); } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new JrError('JR_E_CONFIG', `cannot read the token file ${file}: ${(e as Error).message}`);
  }
  const st = await lstat(file);
  if ((st.mode & 0o077) !== 0) throw new JrError('JR_E_CONFIG', `the token file ${file} is readable by others (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`);
  try {
    const data = JSON.parse(text) as TokenFile;
    if (!Array.isArray(data.tokens)) throw new Error('no "tokens" array');
    return data.tokens.filter((t) => isTokenName(t.name) && /^[0-9a-f]{64}$/.test(t.sha256));
  } catch (e) {
    throw new JrError('JR_E_CONFIG', `the token file ${file} is not valid: ${(e as Error).message}`);
  }
}

/** Write the token file atomically with mode 0600 (created that way: never briefly readable). */
async function writeTokens(file: string, tokens: TokenRecord[]): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  await rm(tmp, { force: true });
  const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    await fh.writeFile(JSON.stringify({ version: 1, tokens } satisfies TokenFile, null, 2) + '\n');
    await fh.sync();
  } finally { await fh.close(); }
  try { await rename(tmp, file); } catch (e) { await rm(tmp, { force: true }); throw e; }
  await fsyncPath(path.dirname(file));
}

/** Create a token; returns the secret (shown once, never stored). NAME must be new. */
export async function addToken(file: string, name: string, limits: TokenLimits): Promise<string> {
  if (!isTokenName(name)) throw new JrError('JR_E_USAGE', `token name ${JSON.stringify(name)} must be 1-64 characters of A-Z a-z 0-9 . _ - (not starting with . _ -)`);
  const tokens = await readTokens(file);
  if (tokens.some((t) => t.name === name)) throw new JrError('JR_E_USAGE', `a token named ${name} exists already (token revoke ${name} first)`);
  const secret = `jr_${randomBytes(32).toString('base64url')}`;
  tokens.push({ name, sha256: hash(secret).toString('hex'), createdAt: new Date().toISOString(), ...limits });
  await writeTokens(file, tokens);
  return secret;
}

/** Remove a token by name; false when there was none. */
export async function revokeToken(file: string, name: string): Promise<boolean> {
  const tokens = await readTokens(file);
  const left = tokens.filter((t) => t.name !== name);
  if (left.length === tokens.length) return false;
  await writeTokens(file, left);
  return true;
}

/** The service's view of the token file: cached, re-read when its mtime or size changes. */
export class TokenStore {
  private cache: TokenRecord[] = [];
  private stamp = '';
  constructor(readonly file: string) {}

  /** The current tokens: one lstat per call, the file re-read when it changed (a revoke counts at once). */
  async all(): Promise<TokenRecord[]> {
    const st = await lstat(this.file).catch(() => null);
    const stamp = st ? `${st.mtimeMs}:${st.size}:${st.ino}` : 'none';
    if (stamp !== this.stamp) { this.cache = await readTokens(this.file); this.stamp = stamp; }
    return this.cache;
  }

  /** The token record a presented secret belongs to, or null. Constant time over all tokens. */
  async verify(secret: string): Promise<TokenRecord | null> {
    const h = hash(secret);
    const find = (tokens: TokenRecord[]): TokenRecord | null => {
      let found: TokenRecord | null = null;
      for (const t of tokens) {
        // Every stored hash is compared, whatever matched before: the time does not depend on which.
        if (timingSafeEqual(h, Buffer.from(t.sha256, 'hex')) && found === null) found = t;
      }
      return found;
    };
    return find(await this.all());
  }
}
