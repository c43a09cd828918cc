import { defineConfig } from 'vitest/config';
import { SkipGuard } from './test/support/skip-guard.ts';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Tests start real servers (registries, dockerd); two cores cannot run many at once.
    maxWorkers: 2,
    // A run fails when a test is skipped for a reason test/allowed-skips.ts does not list.
    reporters: ['default', new SkipGuard()],
  },
});
