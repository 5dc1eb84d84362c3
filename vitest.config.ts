import { defineConfig } from 'vitest/config';

// Real-qemu tests are slow under TCG on 2 cores: generous timeouts, and files run one at a time
// so two suites never fight over the CPUs and skew each other's watchdogs.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 300_000,
    hookTimeout: 600_000,
    fileParallelism: false,
    // No HTTP listener unless a test asks for one (--listen beats the environment): services that
    // tests start would otherwise all bind the default 127.0.0.1:7480 and refuse to start (JR_E_LISTEN).
    env: { JOBRUNNER_LISTEN: 'off' },
    reporters: ['default'],
  },
});
