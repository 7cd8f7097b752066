import { describe, expect, it } from 'vitest';
import { RttEstimator } from '../../../common/engine/rtt-estimator.js';

describe('RttEstimator: RFC 6298 smoothing', () => {
  it('starts at the first sample with half of it as deviation, then moves by an eighth and a quarter', () => {
    const rtt = new RttEstimator();
    expect(rtt.timeoutMs).toBeNull();
    rtt.noteSample(100);
    expect(rtt.smoothedMs).toBe(100);
    expect(rtt.timeoutMs).toBe(300); // 100 + 4 × 50
    rtt.noteSample(200);
    expect(rtt.smoothedMs).toBeCloseTo(112.5); // 7/8 × 100 + 1/8 × 200
    expect(rtt.timeoutMs).toBeCloseTo(112.5 + 4 * (0.75 * 50 + 0.25 * 100));
    rtt.reset();
    expect(rtt.smoothedMs).toBeNull();
  });

  it('a queue that inflates every round trip to a second raises the timeout past it: a slow path is not a dead one', () => {
    const rtt = new RttEstimator();
    rtt.noteSample(300);
    for (let i = 0; i < 50; i++) rtt.noteSample(900 + (i % 5) * 100);
    expect(rtt.smoothedMs).toBeGreaterThan(1000);
    expect(rtt.timeoutMs).toBeGreaterThan(1300);
  });
});
