import { describe, expect, it } from 'vitest';
import {
  AUTHENTICATION_FAILURES_TO_GIVE_UP,
  AUTHENTICATION_MAX_DELAY_MS,
  authenticationRetryStepMs,
  jitteredDelayMs,
  networkRetryStepMs,
} from '../../../common/endpoints/backoff.js';
import { DEFAULT_CLIENT_CONFIG } from '../../../common/endpoints/config.js';

const steps = (step: (failures: number) => number, count: number): number[] => Array.from({ length: count }, (_, i) => step(i + 1));

describe('networkRetryStepMs', () => {
  it('doubles from reconnectBaseDelayMs to reconnectMaxDelayMs (100 ms to 1 s by default) and stays there', () => {
    expect(steps((n) => networkRetryStepMs(n, DEFAULT_CLIENT_CONFIG), 8)).toEqual([100, 200, 400, 800, 1000, 1000, 1000, 1000]);
    expect(networkRetryStepMs(10_000, DEFAULT_CLIENT_CONFIG)).toBe(1000); // no overflow to Infinity or NaN
  });
});

describe('authenticationRetryStepMs', () => {
  it('follows the network schedule until the client gives up, then doubles from 1 s to a 30 s cap', () => {
    expect(AUTHENTICATION_FAILURES_TO_GIVE_UP).toBe(3);
    expect(steps((n) => authenticationRetryStepMs(n, DEFAULT_CLIENT_CONFIG), 10)).toEqual([
      100, 200, // before giving up: soon, as one injected failure should cost little
      1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000,
    ]);
    expect(authenticationRetryStepMs(10_000, DEFAULT_CLIENT_CONFIG)).toBe(AUTHENTICATION_MAX_DELAY_MS);
  });

  it('starts where the network schedule stops, and never caps below it', () => {
    const config = { reconnectBaseDelayMs: 500, reconnectMaxDelayMs: 40_000 };
    expect(steps((n) => authenticationRetryStepMs(n, config), 5)).toEqual([500, 1000, 40_000, 40_000, 40_000]);
  });

  it('a wrong secret makes at most a handful of attempts from 10 s to 60 s, whatever the jitter', () => {
    for (const random of [0, 0.5, 0.999]) {
      const attemptTimes: number[] = [];
      for (let n = 1, t = 0; t <= 60_000; n++) {
        attemptTimes.push(t);
        t += jitteredDelayMs(authenticationRetryStepMs(n, DEFAULT_CLIENT_CONFIG), random);
      }
      const late = attemptTimes.filter((t) => t > 10_000);
      expect(late.length).toBeGreaterThanOrEqual(1);
      expect(late.length).toBeLessThanOrEqual(4);
    }
  });
});

describe('jitteredDelayMs', () => {
  it('is 50 % to 100 % of the step, rounded', () => {
    expect(jitteredDelayMs(1000, 0)).toBe(500);
    expect(jitteredDelayMs(1000, 0.5)).toBe(750);
    expect(jitteredDelayMs(1000, 0.999_999)).toBe(1000);
    expect(jitteredDelayMs(101, 0)).toBe(51);
  });
});
