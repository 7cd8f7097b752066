import { defineConfig } from 'vitest/config';

/** The end-to-end suite: real telnet, ssh and iperf3 between two network namespaces (root). */
export default defineConfig({
  test: {
    include: ['test/e2e/**/*.e2e.test.ts'],
    testTimeout: 180_000,
    hookTimeout: 60_000,
    pool: 'forks',
    fileParallelism: false,
    reporters: ['default'],
  },
});
