import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['packages/*/src/**/*.test.ts', 'services/*/src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Integration tests start real servers and mediasoup workers; on two cores running test
    // files one at a time keeps timings sane.
    fileParallelism: false,
    pool: 'forks',
  },
});
