/** What bench/peers/bulk.ts prints when it is done, and the rate it means. */
export interface BulkResult {
  /** Bytes that arrived at the receiving end. */
  bytes: number;
  seconds: number;
  error?: string;
}

/** The transfer's rate at the receiver; NaN when it printed nothing usable (reported as n/a). */
export function bulkBitsPerSecond(result: BulkResult | null): number {
  return result === null || !(result.seconds > 0) ? Number.NaN : (result.bytes * 8) / result.seconds;
}
