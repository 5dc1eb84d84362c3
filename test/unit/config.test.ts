import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadSettings, settingsHelp } from '../../src/config.js';
import { parseDuration, parseSize } from '../../src/units.js';

const noEnv = { HOME: '/nonexistent' };

describe('configuration', () => {
  it('has defaults for everything', () => {
    const { settings } = loadSettings([], noEnv);
    expect(settings).toMatchObject({ timeout: 7_200_000, concurrency: 1, accel: 'auto', network: 'off', once: false, memory: 1024 ** 3 });
    expect(settings.queue).toBe(path.resolve('./queue'));
  });

  it('accepts durations and sizes in human units', () => {
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('20m')).toBe(1_200_000);
    expect(parseDuration('2h')).toBe(7_200_000);
    expect(parseDuration('2 hours')).toBeNull();
    expect(parseSize('512M')).toBe(512 * 1024 ** 2);
    expect(parseSize('1.5GiB')).toBe(1.5 * 1024 ** 3);
    const { settings } = loadSettings(['--timeout', '20s', '--memory=2G', '--once', '--concurrency', '3'], noEnv);
    expect(settings).toMatchObject({ timeout: 20_000, memory: 2 * 1024 ** 3, once: true, concurrency: 3 });
  });

  it('layers file < env < flags', async () => {
    const d = await mkdtemp(path.join(os.tmpdir(), 'cfg-'));
    const f = path.join(d, 'c.json');
    await writeFile(f, JSON.stringify({ timeout: '1h', concurrency: 4, cpus: 3 }));
    const env = { ...noEnv, JOBRUNNER_CONFIG: f, JOBRUNNER_CONCURRENCY: '5' };
    const { settings, configFile } = loadSettings(['--cpus', '1'], env);
    expect(configFile).toBe(f);
    expect(settings).toMatchObject({ timeout: 3_600_000, concurrency: 5, cpus: 1 });
  });

  it('rejects bad values and unknown flags with specific messages', () => {
    expect(() => loadSettings(['--timeout', 'soon'], noEnv)).toThrow(/timeout: must be a duration/);
    expect(() => loadSettings(['--accel', 'xen'], noEnv)).toThrow(/accel/);
    expect(() => loadSettings(['--concurrency', '0'], noEnv)).toThrow(/concurrency: must be a whole number/);
    expect(() => loadSettings(['--compress-preset', '10'], noEnv)).toThrow(/compressPreset: must be an xz preset from 0 to 9/);
    expect(() => loadSettings(['--compress-preset', '1.5'], noEnv)).toThrow(/must be an xz preset/);
    expect(loadSettings([], noEnv).settings.compressPreset).toBe(1);
    expect(loadSettings(['--compress-preset=6'], noEnv).settings.compressPreset).toBe(6);
    expect(loadSettings([], { ...noEnv, JOBRUNNER_COMPRESS_PRESET: '0' }).settings.compressPreset).toBe(0);
    expect(() => loadSettings(['--tiemout', '5s'], noEnv)).toThrow(/unknown option --tiemout/);
    expect(() => loadSettings(['--timeout'], noEnv)).toThrow(/Expected --timeout to be followed by a value/);
  });

  it('rejects unknown keys in a config file', async () => {
    const d = await mkdtemp(path.join(os.tmpdir(), 'cfg-'));
    const f = path.join(d, 'c.json');
    await writeFile(f, JSON.stringify({ timout: '1h' }));
    expect(() => loadSettings(['--config', f], noEnv)).toThrow(/timout/);
  });

  it('documents every flag with its default and env var', () => {
    const help = settingsHelp();
    for (const flag of ['--queue', '--done', '--failed', '--base-image', '--timeout', '--concurrency', '--memory', '--cpus', '--accel', '--network', '--log-cap', '--[no-]once']) {
      expect(help).toContain(flag);
    }
    expect(help).toContain('JOBRUNNER_TIMEOUT');
    expect(help).toContain('default "2h"');
  });
});
