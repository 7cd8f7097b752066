import { DeliveryRate } from './delivery-rate.js';

/**
 * How much one session may have in flight on a link that several sessions are using at once.
 *
 * The link is one TCP connection: a packet written to it waits behind every byte already in the
 * kernel's buffers and in the path's queues, whichever session they belong to. A bulk session
 * with a 2 MiB window keeps up to that much queued there, and a keystroke on another session
 * waits for all of it: 5 ms at the median on loopback with two busy cores, and 750 ms on a
 * 20 Mbit/s path with a 50 ms round trip (`npm run bench`, WAN section), where a window is 0.8 s
 * of sending. While another session is sending, a session is therefore held to a budget; the
 * rest of its backlog waits in its own queue, where the multiplexer's round robin puts the other
 * session's packets first.
 *
 * The budget is the path's bandwidth-delay product, from what the link measured: its fastest
 * round trip and its best delivery rate of the last seconds, times BDP_GAIN, and never below the
 * floor. Held to one BDP and a quarter, a bulk session still fills the path (the pipe holds one
 * BDP), while what waits in the queues ahead of a keystroke is a quarter of a round trip of
 * sending. On loopback (round trips of a fraction of a millisecond) it is the floor. Before both
 * are measured (the first ack of a new path), the floor too. A session alone on the link is held
 * too, more loosely (20 ms of sending more, and two products while it starts up): without it, a
 * bulk transfer that ran alone leaves a window in the queues, and the first keystrokes after it
 * wait for all of that (0.5 s at 20 Mbit/s in the bench).
 *
 * Pure bookkeeping: the multiplexer tells it who sent when, what was acknowledged, and each
 * measured round trip.
 */

/** The budget in bandwidth-delay products: enough to fill the path, little more to queue. */
export const SHARED_LINK_BDP_GAIN = 1.25;
/**
 * A session alone on the link: round trips of its rate in flight, plus ALONE_QUEUE_MS of it.
 * While the path is not full (DeliveryRate.full), twice the product, so that the rate may double
 * each round trip (a transfer starting up); then the shared gain, so that a keystroke arriving
 * finds little queued. The fixed part keeps a fast path from being held by its tiny round trip
 * (on loopback it is 20 MB, more than any window: there a lone session is never held).
 */
const ALONE_STARTUP_ROUND_TRIPS = 2;
const ALONE_QUEUE_MS = 20;
/**
 * With an express lane (§4.11) the main lane carries no keystrokes, and its budget is there to
 * keep the path's bottleneck queue short for everyone's packets, the express lane's included.
 * Its own congestion control cannot: held below its window by this budget, the connection counts
 * as application-limited, BBR stays in its start-up mode (pacing at 2.9 times the rate, `ss -ti`
 * in the WAN bench), and whatever the budget lets out above the path's product goes straight into
 * the bottleneck's queue. So a session alone on the main lane is held to the product and a
 * little more: EXPRESS_MAIN_BDP_GAIN of it and EXPRESS_MAIN_QUEUE_MS of sending (twice the product
 * while the rate may still double); shared (a keystroke on either lane within the hold), to
 * EXPRESS_MAIN_BDP_GAIN of it: the keystrokes wait only in the path's queue, where the quarter of
 * a product the shared budget leaves without the lane cost them 25 ms at 100 Mbit/s and 50 ms one
 * way (key p50 127 ms against direct TCP's 102; with a tenth, 114). Acks are asked for every
 * eighth of the budget, so that room comes back in small steps, not bursts.
 */
export const EXPRESS_MAIN_BDP_GAIN = 1.1;
/**
 * Room for the stalls of TCP's loss recovery, during which the peer reads nothing and acks
 * nothing: with 5 ms, a download under 1% loss (50 Mbit/s, 25 ms) fell to 0.82x direct TCP; with
 * 20 ms it ran at 0.96x, and keys beside a bulk upload still came back faster than direct TCP's.
 */
const EXPRESS_MAIN_QUEUE_MS = 20;
/** How many acks a session asks for per budget's worth of sending: a quarter each without the express lane, an eighth with it. */
export const ACK_REQUESTS_PER_BUDGET = 4;
export const ACK_REQUESTS_PER_BUDGET_EXPRESS = 8;
/** A delivery rate sample spans at least this long (or one round trip, if longer). */
const RATE_SAMPLE_MIN_MS = 10;
/** How long the best delivery rate is remembered: ten round trips of a long intercontinental path. */
const RATE_WINDOW_MS = 2000;

export interface SharedLinkOptions {
  /** The smallest budget; 0 turns the limit off. */
  floorBytes: number;
  /** How long after two sessions last sent close together the link still counts as shared. */
  holdMs: number;
}

export class SharedLinkBudget {
  readonly #floorBytes: number;
  readonly #holdMs: number;
  /** Who sent last and when; a different session sending within holdMs makes the link shared. */
  #lastSender: unknown = null;
  #lastSentAt = Number.NEGATIVE_INFINITY;
  #sharedUntil = Number.NEGATIVE_INFINITY;
  #minRttMs = Number.POSITIVE_INFINITY;
  readonly #rate = new DeliveryRate({ minIntervalMs: RATE_SAMPLE_MIN_MS, windowMs: RATE_WINDOW_MS });

  constructor(options: SharedLinkOptions) {
    this.#floorBytes = options.floorBytes;
    this.#holdMs = options.holdMs;
  }

  /** `sender` (any identity: the session's slot) wrote a packet at `now`. */
  noteSent(sender: unknown, now: number): void {
    if (sender !== this.#lastSender) {
      if (this.#lastSender !== null && now - this.#lastSentAt < this.#holdMs) this.#sharedUntil = now + this.#holdMs;
      this.#lastSender = sender;
    }
    this.#lastSentAt = now;
  }

  /** A round trip measured on this link: a packet's write to its ack's arrival. */
  noteRoundTrip(rttMs: number): void {
    if (rttMs >= 0 && rttMs < this.#minRttMs) this.#minRttMs = rttMs;
  }

  /** The peer acknowledged `bytes` of payload at `now`, on any session. */
  noteDelivered(bytes: number, now: number): void {
    this.#rate.noteDelivered(bytes, now, this.minRttMs);
  }

  /** The link's best recent delivery rate in bytes per millisecond, or null before it is measured. */
  deliveryRate(now: number): number | null {
    return this.#rate.bytesPerMs(now);
  }

  /** The fastest round trip seen on this link, or null before the first. */
  get minRttMs(): number | null {
    return Number.isFinite(this.#minRttMs) ? this.#minRttMs : null;
  }

  /** Whether the sessions are being held to a budget at `now` (round trips are worth measuring). */
  isShared(now: number): boolean {
    return this.#floorBytes > 0 && now < this.#sharedUntil;
  }

  /**
   * Most bytes one session may have in flight at `now` (Infinity: no limit but its window), on a
   * link with or without an express lane (`express`).
   */
  budgetBytes(now: number, express = false): number {
    if (this.#floorBytes === 0) return Number.POSITIVE_INFINITY;
    const rate = this.#rate.bytesPerMs(now);
    const measured = Number.isFinite(this.#minRttMs) && rate !== null;
    if (!this.isShared(now)) {
      // Alone: room to grow while the path is not full (the rate may double each round trip),
      // then a quarter of a product (a tenth with the express lane), and always some milliseconds
      // of sending; unmeasured, only the window.
      if (!measured) return Number.POSITIVE_INFINITY;
      const fullGain = express ? EXPRESS_MAIN_BDP_GAIN : SHARED_LINK_BDP_GAIN;
      const roundTrips = this.#rate.full ? fullGain : ALONE_STARTUP_ROUND_TRIPS;
      const queueMs = express ? EXPRESS_MAIN_QUEUE_MS : ALONE_QUEUE_MS;
      return Math.max(this.#floorBytes, Math.ceil((roundTrips * this.#minRttMs + queueMs) * rate));
    }
    // Before the path is measured, the floor: the first ack request measures a round trip soon.
    if (!measured) return this.#floorBytes;
    const sharedGain = express ? EXPRESS_MAIN_BDP_GAIN : SHARED_LINK_BDP_GAIN;
    return Math.max(this.#floorBytes, Math.ceil(sharedGain * this.#minRttMs * rate));
  }

  /** A new link: perhaps a new path, whose round trips and rate are yet to be seen. Who shares it carries over. */
  newPath(): void {
    this.#minRttMs = Number.POSITIVE_INFINITY;
    this.#rate.reset();
  }
}
