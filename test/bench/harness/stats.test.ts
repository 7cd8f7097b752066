import { describe, expect, it } from 'vitest';
import { alternatedSchedule, bestOf, percentile, summarize } from '../../../bench/harness/stats.js';

describe('alternatedSchedule', () => {
  it('puts each compared path first in turn, with the one-off paths between rounds', () => {
    expect(alternatedSchedule(['relay', 'tunnel'], 5, ['direct', 'tls', 'socat', 'ssh'])).toEqual([
      'relay', 'tunnel', 'direct',
      'tunnel', 'relay', 'tls',
      'relay', 'tunnel', 'socat',
      'tunnel', 'relay', 'ssh',
      'relay', 'tunnel',
    ]);
  });

  it('measures every compared path once per round, as often first as second over an even count', () => {
    const order = alternatedSchedule(['a', 'b', 'c'], 4);
    expect(order).toHaveLength(12);
    const firsts = [0, 3, 6, 9].map((i) => order[i]);
    expect(firsts).toEqual(['a', 'c', 'a', 'c']);
    for (const key of ['a', 'b', 'c']) expect(order.filter((k) => k === key)).toHaveLength(4);
  });

  it('leaves the caller\'s list as it was', () => {
    const compared = ['x', 'y'];
    alternatedSchedule(compared, 3);
    expect(compared).toEqual(['x', 'y']);
  });
});

describe('bestOf', () => {
  it('takes the largest of the runs that were measured', () => {
    expect(bestOf([3, Number.NaN, 7, 5])).toBe(7);
  });

  it('is NaN when no run was measured, so the target is a miss', () => {
    expect(bestOf([Number.NaN, Number.NaN])).toBeNaN();
    expect(bestOf([])).toBeNaN();
  });
});

describe('summarize', () => {
  it('gives nearest-rank percentiles of unsorted samples', () => {
    const samples = Array.from({ length: 100 }, (_, i) => 100 - i); // 100 .. 1
    const s = summarize(samples);
    expect(s).toMatchObject({ count: 100, p50: 50, p90: 90, p99: 99, max: 100, mean: 50.5 });
    expect(samples[0]).toBe(100); // not sorted in place
  });

  it('is NaN throughout for no samples', () => {
    const s = summarize([]);
    expect(s.count).toBe(0);
    expect(s.p50).toBeNaN();
    expect(s.max).toBeNaN();
    expect(percentile([], 50)).toBeNaN();
  });
});
