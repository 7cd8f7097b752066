/**
 * The memory a proxy lets its sessions hold in their send queues, all links together: bytes read
 * from local sockets and not yet acknowledged by the peer (kept for a resume). Windows bound each
 * session (2 MiB, growing to the path's needs, up to 16 MiB by default); this bounds their sum,
 * so that a thousand busy sessions, or a few stalled ones with grown windows, cannot take
 * gigabytes between them.
 *
 * A session may queue more while the total is under the budget, or while it holds less than the
 * guaranteed share (so that no session ever stops for others: a stalled one keeps what it holds,
 * the others go on, more slowly once the budget is spent). What is queued is therefore at most
 * `budget + sessions × (guaranteed + one frame)`, each session's last frame being allowed to
 * cross either bound. Sessions that stopped on the budget are woken, oldest first, when acks
 * bring the total back under it.
 *
 * What the peer sends is bounded by the peer's windows and budget: a receiver holds at most what
 * the sender may have unacknowledged (PROTOCOL.md §4.9).
 */

/** Bytes every session may queue whatever the budget says. */
export const GUARANTEED_QUEUE_BYTES = 16 * 1024;

export class SendBudget {
  readonly #totalBytes: number;
  #usedBytes = 0;
  /** Sessions stopped on the budget, each with its wake-up, in the order they stopped. */
  readonly #waiting = new Set<() => void>();
  #wakeScheduled = false;

  constructor(totalBytes: number) {
    this.#totalBytes = totalBytes;
  }

  get totalBytes(): number {
    return this.#totalBytes;
  }

  /** Bytes queued by every session charged to this budget. */
  get usedBytes(): number {
    return this.#usedBytes;
  }

  /** Whether a session that holds `queuedBytes` may queue more now. */
  mayQueue(queuedBytes: number): boolean {
    return this.#usedBytes < this.#totalBytes || queuedBytes < GUARANTEED_QUEUE_BYTES;
  }

  charge(bytes: number): void {
    this.#usedBytes += bytes;
  }

  /** `bytes` left a send queue (acknowledged, or the session ended); wakes stopped sessions if there is room. */
  release(bytes: number): void {
    this.#usedBytes -= bytes;
    if (this.#waiting.size > 0 && this.#usedBytes < this.#totalBytes && !this.#wakeScheduled) {
      // Not from inside the ack that freed the room: the woken session's queueing must not run
      // in the middle of another session's bookkeeping.
      this.#wakeScheduled = true;
      queueMicrotask(this.#wake);
    }
  }

  /** `wake` is called once when there is room again (a session stopped on the budget). */
  waitForRoom(wake: () => void): void {
    this.#waiting.add(wake);
  }

  /** The session is gone: it waits no more. */
  cancelWait(wake: () => void): void {
    this.#waiting.delete(wake);
  }

  readonly #wake = (): void => {
    this.#wakeScheduled = false;
    for (const wake of this.#waiting) {
      if (this.#usedBytes >= this.#totalBytes) return;
      this.#waiting.delete(wake);
      wake();
    }
  };
}
