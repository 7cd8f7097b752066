/**
 * Serial-number arithmetic on 32-bit sequence numbers (RFC 1982): sequence numbers count packets
 * and may wrap past 2^32, so "a comes before b" is decided by the signed distance, not by `<`.
 */

/** `seq + n`, wrapped to 32 bits. */
export function seqAdd(seq: number, n: number): number {
  return (seq + n) >>> 0;
}

/** Signed distance from `a` to `b` in the range [-2^31, 2^31): positive when b is after a. */
export function seqDistance(a: number, b: number): number {
  return (b - a) | 0;
}

/** True when `a` comes strictly before `b`. */
export function seqBefore(a: number, b: number): boolean {
  return seqDistance(a, b) > 0;
}

/** True when `a` comes before `b` or equals it. */
export function seqBeforeOrEqual(a: number, b: number): boolean {
  return seqDistance(a, b) >= 0;
}
