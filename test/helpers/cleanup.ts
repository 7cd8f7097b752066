import { afterEach } from 'vitest';

/**
 * Registers teardown right where a resource is created; everything registered runs after each
 * test, newest first, even when the test failed.
 */
export function useCleanup(): (cleanup: () => unknown) => void {
  const cleanups: Array<() => unknown> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  return (cleanup) => {
    cleanups.push(cleanup);
  };
}
