/**
 * How fast a link delivers: payload bytes the peer acknowledged per millisecond, the best sample
 * of the last few seconds. A sample spans at least one round trip (or `minIntervalMs`), so that
 * acks arriving in bursts do not read as a faster path; the best rather than the latest, because
 * a sender that had nothing to send for a while (a typist, the end of a transfer) delivers
 * slowly without the path being slow. The same windowed maximum as BBR's bottleneck bandwidth
 * filter, over time rather than round trips.
 *
 * Pure bookkeeping: the caller says what was delivered when.
 */
export interface DeliveryRateOptions {
  /** The shortest span of one sample. */
  minIntervalMs: number;
  /** How long a sample counts; older ones are forgotten (the path may have become slower). */
  windowMs: number;
}

/** Growth that counts as the path not being full yet, and how many samples without it make it full. */
const GROWTH = 1.25;
const FULL_AFTER_SAMPLES = 3;

interface Sample {
  at: number;
  bytesPerMs: number;
}

export class DeliveryRate {
  readonly #minIntervalMs: number;
  readonly #windowMs: number;
  /** The current sample: since when, and how much had been delivered then. */
  #sampleStart = Number.NaN;
  #sampleStartBytes = 0;
  #deliveredBytes = 0;
  /** Recorded samples, oldest first. */
  #samples: Sample[] = [];
  /** The rate last seen to grow by a quarter, and the samples since that did not beat it so. */
  #plateau = 0;
  #samplesWithoutGrowth = 0;

  constructor(options: DeliveryRateOptions) {
    this.#minIntervalMs = options.minIntervalMs;
    this.#windowMs = options.windowMs;
  }

  /** Everything the peer acknowledged so far, in payload bytes. */
  get deliveredBytes(): number {
    return this.#deliveredBytes;
  }

  /**
   * The peer acknowledged `bytes` more at `now`. `roundTripMs`: the path's round trip as known
   * (null before the first), the least span of a sample.
   */
  noteDelivered(bytes: number, now: number, roundTripMs: number | null): void {
    if (bytes <= 0) return;
    this.#deliveredBytes += bytes;
    // A sample starts where the last one ended; the first, or the first after a long silence,
    // starts here, after this ack (what it acknowledges was sent before the sample began).
    if (Number.isNaN(this.#sampleStart) || now - this.#sampleStart > this.#windowMs) {
      this.#sampleStart = now;
      this.#sampleStartBytes = this.#deliveredBytes;
      return;
    }
    const span = now - this.#sampleStart;
    if (span < Math.max(this.#minIntervalMs, roundTripMs ?? 0)) return;
    this.#record(now, (this.#deliveredBytes - this.#sampleStartBytes) / span);
    this.#sampleStart = now;
    this.#sampleStartBytes = this.#deliveredBytes;
  }

  /** The best rate sampled within the window before `now`, in bytes per millisecond; null for none. */
  bytesPerMs(now: number): number | null {
    this.#forgetBefore(now - this.#windowMs);
    // The list falls from oldest to newest (see #record): its head is the best.
    return this.#samples[0]?.bytesPerMs ?? null;
  }

  /**
   * Whether the path seems full: three samples in a row (each a round trip or more) grew less
   * than a quarter over the best before them, as BBR decides that its start-up is over. A sender
   * that is not full may let its rate double each round trip; a full one needs little headroom.
   */
  get full(): boolean {
    return this.#samplesWithoutGrowth >= FULL_AFTER_SAMPLES;
  }

  /** A new path: its rate is yet to be seen. */
  reset(): void {
    this.#samples = [];
    this.#sampleStart = Number.NaN;
    this.#plateau = 0;
    this.#samplesWithoutGrowth = 0;
  }

  #record(now: number, bytesPerMs: number): void {
    this.#forgetBefore(now - this.#windowMs);
    // Nothing remembered: whatever comes may be a start-up again, measured against itself.
    if (this.#samples.length === 0) {
      this.#plateau = 0;
      this.#samplesWithoutGrowth = 0;
    }
    if (bytesPerMs >= GROWTH * this.#plateau) {
      this.#plateau = bytesPerMs;
      this.#samplesWithoutGrowth = 0;
    } else {
      this.#samplesWithoutGrowth++;
    }
    // A sample no better than a later one can never be the maximum again: keep the list falling.
    while (this.#samples.length > 0 && (this.#samples[this.#samples.length - 1] as Sample).bytesPerMs <= bytesPerMs) this.#samples.pop();
    this.#samples.push({ at: now, bytesPerMs });
  }

  #forgetBefore(oldest: number): void {
    let drop = 0;
    while (drop < this.#samples.length && (this.#samples[drop] as Sample).at < oldest) drop++;
    if (drop > 0) this.#samples.splice(0, drop);
  }
}
