// The dashboard: static files from web/ in the repository (no CDN, no bundler), served with a
// strict Content-Security-Policy on every response. The page renders console text with
// textContent only; the CSP is the second wall should that ever slip.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { REPO_ROOT } from '../config.js';
import type { FastifyInstance, HttpCtx } from './types.js';

export const WEB_DIR = path.join(REPO_ROOT, 'web');

const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
const FILES: Record<string, string> = {
  '/': 'index.html', '/index.html': 'index.html', '/job.html': 'job.html',
  '/app.js': 'app.js', '/job.js': 'job.js', '/common.js': 'common.js', '/style.css': 'style.css',
};
const TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' };

export function registerStatic(app: FastifyInstance, ctx: HttpCtx): void {
  app.addHook('onSend', async (_req, reply, payload) => {
    void reply.header('content-security-policy', CSP).header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer').header('x-frame-options', 'DENY');
    return payload;
  });
  // A fixed list of files, never a path from the request: nothing outside web/ can be named.
  for (const [route, file] of Object.entries(FILES)) {
    app.get(route, async (req, reply) => {
      await ctx.auth.read(req);
      const body = await readFile(path.join(WEB_DIR, file));
      return reply.type(TYPES[path.extname(file)]!).header('cache-control', 'no-cache').send(body);
    });
  }
}
