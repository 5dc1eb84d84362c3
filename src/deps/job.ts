// What the lifecycle asks of deps/ for one job: read and check its manifest, and the settings the
// VM gets once the manifest's requests (already capped by the operator's limits) are applied.
import type { Settings } from '../config.js';
import { emptyManifest, parseManifest, type Manifest, type ManifestLimits } from './manifest.js';
import { readManifestBytes } from './manifest-read.js';

/** The operator's caps, from the service settings. */
export function manifestLimits(s: Pick<Settings, 'maxMemory' | 'maxCpus' | 'maxTimeout' | 'maxDisk'>): ManifestLimits {
  return { maxMemory: s.maxMemory, maxCpus: s.maxCpus, maxTimeout: s.maxTimeout, maxDisk: s.maxDisk };
}

/** The job image's manifest (the empty one when it has none); JR_E_INPUT when it is bad. */
export async function loadJobManifest(image: string, s: Settings): Promise<Manifest> {
  const bytes = await readManifestBytes(image);
  return bytes === null ? emptyManifest() : parseManifest(bytes, manifestLimits(s));
}

/** The settings for this job's VM: the service's, with what the manifest asked for. */
export function settingsFor<S extends Pick<Settings, 'memory' | 'cpus' | 'timeout'>>(s: S, m: Manifest): S {
  return { ...s, memory: m.memory ?? s.memory, cpus: m.cpus ?? s.cpus, timeout: m.timeout ?? s.timeout };
}
