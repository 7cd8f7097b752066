import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The end-to-end suite (namespaces, real telnet/ssh/iperf3) has its own config and command.
    exclude: ['test/e2e/**', '**/node_modules/**'],
    // Integration tests start real processes and push tens of MiB through them.
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Integration files each use a couple of processes; two cores run them one file at a time.
    fileParallelism: false,
    reporters: ['default'],
  },
});
