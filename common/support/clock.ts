// Imported rather than the global: Node 20 defines `performance`, `process` and `Buffer` on
// globalThis as getters, which optimized code calls on every use (the hot modules import them too).
import { performance } from 'node:perf_hooks';

/**
 * Time as the engine sees it. Heartbeats, dead-link deadlines and reconnect backoff all go through
 * a Clock, so tests can drive them without sleeping.
 */
export interface TimerHandle {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds on a monotonic scale (never goes back when the wall clock is set). */
  now(): number;
  setTimeout(callback: () => void, delayMs: number): TimerHandle;
  setInterval(callback: () => void, intervalMs: number): TimerHandle;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  setTimeout(callback, delayMs) {
    const timer = setTimeout(callback, delayMs);
    return { cancel: () => clearTimeout(timer) };
  },
  setInterval(callback, intervalMs) {
    const timer = setInterval(callback, intervalMs);
    return { cancel: () => clearInterval(timer) };
  },
};
