import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Suites start real servers and processes; two cores: run files two at a time.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
