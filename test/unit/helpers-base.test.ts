// The fast tier's switch: real-base tests skip cleanly without a base image (or with
// JOBRUNNER_SKIP_BASE=1) outside CI, and never skip in CI.
import { describe, expect, it } from 'vitest';
import { realBaseAvailable } from '../helpers.js';

describe('realBaseAvailable', () => {
  it('outside CI: true only when the base is there and not skipped', () => {
    expect(realBaseAvailable({}, true)).toBe(true);
    expect(realBaseAvailable({}, false)).toBe(false);
    expect(realBaseAvailable({ JOBRUNNER_SKIP_BASE: '1' }, true)).toBe(false);
  });

  it('in CI: a missing or skipped base is an error, not a skip', () => {
    expect(realBaseAvailable({ CI: 'true' }, true)).toBe(true);
    expect(() => realBaseAvailable({ CI: 'true' }, false)).toThrow('CI: base-image/default is missing; scripts/test builds it first');
    expect(() => realBaseAvailable({ CI: 'true', JOBRUNNER_SKIP_BASE: '1' }, true)).toThrow('CI: JOBRUNNER_SKIP_BASE is set, but CI runs every test');
  });
});
