/** One part of the bench (throughput, latency, ...): a name for --only, and what it measures. */
export interface BenchSection {
  readonly name: string;
  /** Measures, prints its tables, fills `results[name]` and adds its targets. */
  readonly run: (context: SectionContext) => Promise<void>;
}

export interface SectionContext {
  /** A Node echo server (bench/peers/target.ts) started once for the sections that need one. */
  readonly targetPort: number;
}
