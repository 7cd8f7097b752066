/**
 * The link's round trip as TCP estimates it (RFC 6298): a smoothed round trip and its mean
 * deviation, from each timed packet's write to its ack's arrival. Their sum with four deviations
 * is how long an answer may take before its lateness means something: on a path whose queues
 * inflate the round trip to a second (a bulk transfer over a deep buffer), that is seconds, so a
 * slow path is not taken for a dead one; on an idle path it is a few round trips.
 *
 * Pure bookkeeping: the caller gives the samples.
 */

/** RFC 6298's gains: the smoothed round trip moves an eighth of the way, the deviation a quarter. */
const ALPHA = 1 / 8;
const BETA = 1 / 4;
const DEVIATIONS = 4;

export class RttEstimator {
  #smoothedMs: number | null = null;
  #deviationMs = 0;

  /** A round trip measured on the link. */
  noteSample(rttMs: number): void {
    if (!(rttMs >= 0)) return;
    if (this.#smoothedMs === null) {
      this.#smoothedMs = rttMs;
      this.#deviationMs = rttMs / 2;
      return;
    }
    this.#deviationMs = (1 - BETA) * this.#deviationMs + BETA * Math.abs(this.#smoothedMs - rttMs);
    this.#smoothedMs = (1 - ALPHA) * this.#smoothedMs + ALPHA * rttMs;
  }

  /** The smoothed round trip, or null before the first sample. */
  get smoothedMs(): number | null {
    return this.#smoothedMs;
  }

  /** How long an answer may take: the smoothed round trip and four deviations (null before a sample). */
  get timeoutMs(): number | null {
    return this.#smoothedMs === null ? null : this.#smoothedMs + DEVIATIONS * this.#deviationMs;
  }

  /** A new path: nothing measured yet. */
  reset(): void {
    this.#smoothedMs = null;
    this.#deviationMs = 0;
  }
}
