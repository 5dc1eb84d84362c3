// `jobrunner token add|list|revoke`: API tokens for the HTTP API (service/tokens.ts). The secret
// is printed once by `add`; the file keeps only its sha256.
import { parseArgs } from 'node:util';
import { loadSettings, settingsHelp } from '../config.js';
import { JrError } from '../errors.js';
import { addToken, readTokens, revokeToken } from '../service/tokens.js';
import { parseSize } from '../units.js';

const HELP = `Usage: jobrunner token add NAME [--max-active N] [--max-image-size SIZE] [--rate N/min]
       jobrunner token list
       jobrunner token revoke NAME

API tokens for submitting and cancelling jobs over HTTP (Authorization: Bearer TOKEN).
'add' prints the new token once; only its sha256 is stored, in a 0600 file. The running
service sees additions and revocations from its next request on.

  --max-active N          at most N of this token's jobs queued or running at once
  --max-image-size SIZE   largest upload for this token (e.g. 2G; the service's cap still applies)
  --rate N/min            at most N uploads a minute
${settingsHelp(['tokens'])}
  --config FILE           the config file (the default token file lives beside it)
`;

/** Entry point of `jobrunner token`. */
export async function tokenMain(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true, strict: true,
    options: {
      'max-active': { type: 'string' }, 'max-image-size': { type: 'string' }, rate: { type: 'string' },
      tokens: { type: 'string' }, config: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || positionals.length === 0) { process.stdout.write(HELP); return values.help ? 0 : 2; }
  const flags = [...(values.tokens ? ['--tokens', values.tokens] : []), ...(values.config ? ['--config', values.config] : [])];
  const file = loadSettings(flags, process.env, ['tokens']).settings.tokens;
  const [cmd, name, ...extra] = positionals;
  if (extra.length > 0) throw new JrError('JR_E_USAGE', `unexpected argument ${JSON.stringify(extra[0])}`);
  switch (cmd) {
    case 'add': {
      if (!name) throw new JrError('JR_E_USAGE', 'Expected a NAME: jobrunner token add NAME');
      const maxActive = values['max-active'] === undefined ? null : Number(values['max-active']);
      if (maxActive !== null && !(Number.isInteger(maxActive) && maxActive >= 1)) throw new JrError('JR_E_USAGE', 'Expected --max-active to be a whole number >= 1');
      const maxImageSize = values['max-image-size'] === undefined ? null : parseSize(values['max-image-size']);
      if (maxImageSize === 0 || (values['max-image-size'] !== undefined && maxImageSize === null)) throw new JrError('JR_E_USAGE', 'Expected --max-image-size to be a size such as 2G');
      const m = values.rate === undefined ? null : /^(\d+)(\/min)?$/.exec(values.rate);
      if (values.rate !== undefined && (!m || Number(m[1]) < 1)) throw new JrError('JR_E_USAGE', 'Expected --rate to be N/min, e.g. 10/min');
      const secret = await addToken(file, name, { maxActive, maxImageSize, ratePerMin: m ? Number(m[1]) : null });
      process.stdout.write(`${secret}\n`);
      process.stderr.write(`token ${name} added to ${file}; it is shown only this once\n`);
      return 0;
    }
    case 'list': {
      for (const t of await readTokens(file)) {
        const lim = [t.maxActive !== null ? `max-active ${t.maxActive}` : '', t.maxImageSize !== null ? `max-image-size ${t.maxImageSize}` : '',
          t.ratePerMin !== null ? `rate ${t.ratePerMin}/min` : ''].filter(Boolean).join(', ');
        process.stdout.write(`${t.name}\tcreated ${t.createdAt}${lim ? `\t${lim}` : ''}\n`);
      }
      return 0;
    }
    case 'revoke': {
      if (!name) throw new JrError('JR_E_USAGE', 'Expected a NAME: jobrunner token revoke NAME');
      if (!await revokeToken(file, name)) throw new JrError('JR_E_USAGE', `no token named ${name} in ${file}`);
      process.stderr.write(`token ${name} revoked\n`);
      return 0;
    }
    default: throw new JrError('JR_E_USAGE', `unknown token command ${JSON.stringify(cmd)} (add, list, revoke)`);
  }
}
