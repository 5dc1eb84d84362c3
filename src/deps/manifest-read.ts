// Read /jobrunner.json out of an (untrusted) job image in userspace, never by mounting it, and
// never more than MANIFEST_MAX_BYTES: stat first (a regular file of a sane size), then cat.
// Temporary: one debugfs call per request, as src/image/ext.ts does, until house-confine's
// confined reader (readImageFile(image, path, { maxBytes }) in src/image/) lands; then this file
// becomes a one-line call to it.
import { JrError } from '../errors.js';
import { run } from '../proc.js';
import { MANIFEST_MAX_BYTES, MANIFEST_PATH } from './manifest.js';

const ENV = { PATH: `${process.env.PATH}:/usr/sbin:/sbin` };

async function debugfs(image: string, request: string, maxBuffer: number): Promise<{ stdout: string; stderr: string }> {
  const r = await run('debugfs', ['-R', request, image], { env: ENV, reject: false, maxBuffer, timeoutMs: 60_000 });
  // debugfs exits 0 when it cannot open the filesystem at all: its stderr says so.
  if (r.exitCode !== 0 || /Filesystem not open|while (trying to open|opening filesystem)/.test(r.stderr)) throw new JrError('JR_E_INPUT', `cannot read ${MANIFEST_PATH} from the job image: ${r.stderr.trim().slice(-300)}`);
  return r;
}

/** The manifest's bytes (read as UTF-8 text), or null when the image has none. Throws JR_E_INPUT for a bad one. */
export async function readManifestBytes(image: string, maxBytes = MANIFEST_MAX_BYTES): Promise<Buffer | null> {
  const st = await debugfs(image, `stat "${MANIFEST_PATH}"`, 64 * 1024);
  if (/File not found|not found by ext2_lookup/i.test(st.stderr)) return null;
  const type = /Type:\s*(\S+)/.exec(st.stdout)?.[1];
  const size = /\bSize:\s*(\d+)/.exec(st.stdout)?.[1];
  if (type === undefined || size === undefined) throw new JrError('JR_E_INPUT', `cannot stat ${MANIFEST_PATH} in the job image`);
  if (type !== 'regular') throw new JrError('JR_E_INPUT', `jobrunner.json: Expected a regular file, got a ${type}`);
  if (Number(size) > maxBytes) throw new JrError('JR_E_INPUT', `jobrunner.json: Expected at most ${maxBytes} bytes, got ${size}`);
  // execa's maxBuffer stops the read if the file grew between the two calls (it cannot: read-only).
  const r = await debugfs(image, `cat "${MANIFEST_PATH}"`, maxBytes + 1);
  const out = Buffer.from(r.stdout, 'utf8');
  if (out.length > maxBytes) throw new JrError('JR_E_INPUT', `jobrunner.json: Expected at most ${maxBytes} bytes, got more`);
  return out;
}
