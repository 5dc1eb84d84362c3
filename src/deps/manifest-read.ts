// Read /jobrunner.json out of an (untrusted) job image with the confined reader
// (src/image/extract-tree.ts: debugfs in a sandbox, never a mount), never more than MANIFEST_MAX_BYTES.
import { JrError } from '../errors.js';
import { readImageFile } from '../image/extract-tree.js';
import { MANIFEST_MAX_BYTES, MANIFEST_PATH } from './manifest.js';

/** The manifest's bytes (read as UTF-8 text), or null when the image has none. Throws JR_E_INPUT for a bad one. */
export async function readManifestBytes(image: string, maxBytes = MANIFEST_MAX_BYTES): Promise<Buffer | null> {
  try {
    return await readImageFile(image, MANIFEST_PATH, { maxBytes });
  } catch (e) {
    if (e instanceof JrError && e.code === 'JR_E_INPUT') throw new JrError('JR_E_INPUT', `jobrunner.json: ${e.message}`, { cause: e });
    throw e;
  }
}
