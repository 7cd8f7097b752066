/**
 * How much one session may have in flight on a link that several sessions are using at once.
 *
 * The link is one TCP connection: a packet written to it waits behind every byte already in the
 * kernel's buffers, whichever session they belong to. A bulk session with a 2 MiB window keeps
 * up to that much queued there (about 1 MB measured on loopback), and a keystroke on another
 * session waits for all of it (5 ms at the median on loopback with two busy cores). While another session is sending, a
 * session is therefore held to a smaller budget; the rest of its backlog waits in its own queue,
 * where the multiplexer's round robin can put the other session's packets first.
 *
 * The budget scales with the path's fastest round trip seen on this link, so that it only bites
 * where the path is fast enough to deliver it quickly: budget = max(floor, minRtt × REFERENCE_RATE).
 * On loopback (round trips of a fraction of a millisecond) it is the floor; on a path with a
 * 10 ms round trip it is 10 MB, more than any window, and a bulk transfer is never slowed there.
 * The other side of that choice: on a slow path (100 Mbit/s, 50 ms) a keystroke can still wait
 * behind up to a window of bulk; a budget from the measured delivery rate would close that.
 *
 * Pure bookkeeping: the multiplexer tells it who sent when, and each measured round trip.
 */

/**
 * Bytes per millisecond the budget allows for each millisecond of round trip: about 8 Gbit/s. A
 * session held to the budget can still move this much, so only faster paths are slowed.
 */
export const SHARED_LINK_REFERENCE_BYTES_PER_MS = 1_000_000;

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

  /** The fastest round trip seen on this link, or null before the first. */
  get minRttMs(): number | null {
    return Number.isFinite(this.#minRttMs) ? this.#minRttMs : null;
  }

  /** Whether the sessions are being held to a budget at `now` (round trips are worth measuring). */
  isShared(now: number): boolean {
    return this.#floorBytes > 0 && now < this.#sharedUntil;
  }

  /** Most bytes one session may have in flight at `now`; Infinity when the link is not shared. */
  budgetBytes(now: number): number {
    if (!this.isShared(now)) return Number.POSITIVE_INFINITY;
    // Before the first round trip is measured, the floor: the first ack request measures one soon.
    if (!Number.isFinite(this.#minRttMs)) return this.#floorBytes;
    return Math.max(this.#floorBytes, this.#minRttMs * SHARED_LINK_REFERENCE_BYTES_PER_MS);
  }

  /** A new link: perhaps a new path, whose round trips are yet to be seen. Who shares it carries over. */
  newPath(): void {
    this.#minRttMs = Number.POSITIVE_INFINITY;
  }
}
