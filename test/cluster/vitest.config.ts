import { defineConfig } from 'vitest/config';

/** The cluster suite (docs/cluster-tests.md): only against a kind cluster of scripts/kind/up.sh, never in make test. */
export default defineConfig({
  test: {
    include: ['test/cluster/**/*.cluster.ts'],
    fileParallelism: false,
    testTimeout: 600_000,
    hookTimeout: 120_000,
  },
});
