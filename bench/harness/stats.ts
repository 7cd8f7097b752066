/**
 * Statistics over samples, and the order of alternated rounds. The machine is shared and noisy:
 * compared paths are measured in alternated rounds, each going first in turn, and summarized
 * by percentiles (latency: the median of the pooled samples) or by the best run (throughput:
 * noise only ever lowers it).
 */

export interface Percentiles {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index] as number;
}

export function summarize(samples: number[]): Percentiles {
  const sorted = [...samples].sort((a, b) => a - b);
  const sum = sorted.reduce((a, b) => a + b, 0);
  return {
    count: sorted.length,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    max: sorted.length === 0 ? Number.NaN : (sorted[sorted.length - 1] as number),
    mean: sorted.length === 0 ? Number.NaN : sum / sorted.length,
  };
}

/** The largest finite value, or NaN when there is none (every run failed). */
export function bestOf(values: readonly number[]): number {
  const finite = values.filter(Number.isFinite);
  return finite.length === 0 ? Number.NaN : Math.max(...finite);
}

/**
 * The order in which to measure: `rounds` rounds of the `compared` keys, the order reversed
 * every other round so that each goes first in turn (whatever the machine does early or late in a
 * round falls on each alike), and after round i the one-off `extras[i]`, if any (paths measured
 * once, for reference, placed between the compared rounds rather than all before or after).
 */
export function alternatedSchedule<K>(compared: readonly K[], rounds: number, extras: readonly K[] = []): K[] {
  const order: K[] = [];
  for (let round = 0; round < rounds; round++) {
    order.push(...(round % 2 === 0 ? compared : [...compared].reverse()));
    const extra = extras[round];
    if (extra !== undefined) order.push(extra);
  }
  return order;
}
