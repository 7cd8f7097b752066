/**
 * When a session's send window grows: the sender-side counterpart of TCP's receive-buffer
 * autotuning (Linux's tcp_rcv_space_adjust), judged from what the peer acknowledges.
 *
 * A window fills a path when it holds one bandwidth-delay product; a fixed one caps a session at
 * window / round trip (2 MiB over a 200 ms round trip: 84 Mbit/s). Each sample spans at least the
 * path's fastest round trip. If the window was what held the session back during the sample
 * (its writes waited on it), the session's rate in that sample times the fastest round trip is
 * what it would have in flight with no queue anywhere, and the window becomes GROWTH_GAIN times
 * that, up to the cap. While the window limits a session on an empty path, its rate is
 * window / round trip, so the window doubles each round trip until the path, not the window,
 * limits the rate; it then settles at twice the path's product, the headroom TCP keeps too.
 *
 * It never grows for a session whose writes did not wait on the window (an application with
 * little to send) nor for one whose peer stopped acknowledging (a stalled consumer: no samples),
 * and never for a fast path whose product is far below the window (loopback: a few hundred KB).
 * It does not shrink: a window is a bound, not an allocation; the memory it may hold is bounded
 * by the proxy's send budget (send-budget.ts).
 *
 * Pure bookkeeping: the caller says what was acknowledged when, and whether the window was full.
 */

/** The window as a multiple of the product measured with it full. */
export const GROWTH_GAIN = 2;
/** The shortest sample, for paths whose round trip is shorter than a timer's resolution. */
const MIN_SAMPLE_MS = 10;

export class WindowGrowth {
  readonly #maxBytes: number;
  #windowBytes: number;
  /** The current sample: since when, acknowledged bytes in it, and whether the window was full in it. */
  #sampleStart = Number.NaN;
  #sampleBytes = 0;
  #windowLimited = false;

  constructor(initialBytes: number, maxBytes: number) {
    this.#windowBytes = initialBytes;
    this.#maxBytes = Math.max(initialBytes, maxBytes);
  }

  get windowBytes(): number {
    return this.#windowBytes;
  }

  /** The most the window may grow to (never less than it started at). */
  get maxBytes(): number {
    return this.#maxBytes;
  }

  /** The window stopped a write (its bytes wait for acks): the session is window-limited. */
  noteWindowFull(): void {
    this.#windowLimited = true;
  }

  /**
   * The peer acknowledged `bytes` at `now`; `minRttMs` is the path's fastest round trip (null
   * while unknown: no sample ends). Returns the window, grown if this sample says so.
   */
  noteAcknowledged(bytes: number, now: number, minRttMs: number | null): number {
    if (Number.isNaN(this.#sampleStart)) {
      // What this ack covers was sent before the sample began: it starts here.
      this.#startSample(now);
      return this.#windowBytes;
    }
    this.#sampleBytes += bytes;
    if (minRttMs === null) return this.#windowBytes;
    const span = now - this.#sampleStart;
    if (span < Math.max(minRttMs, MIN_SAMPLE_MS)) return this.#windowBytes;
    if (this.#windowLimited && this.#windowBytes < this.#maxBytes) {
      const wanted = Math.ceil((GROWTH_GAIN * this.#sampleBytes * minRttMs) / span);
      if (wanted > this.#windowBytes) this.#windowBytes = Math.min(this.#maxBytes, wanted);
    }
    this.#startSample(now);
    return this.#windowBytes;
  }

  /** A new link: a sample must not span the gap (what was resent is acknowledged late). */
  restart(): void {
    this.#sampleStart = Number.NaN;
  }

  #startSample(now: number): void {
    this.#sampleStart = now;
    this.#sampleBytes = 0;
    this.#windowLimited = false;
  }
}
