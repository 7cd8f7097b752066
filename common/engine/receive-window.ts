import { seqAdd, seqBefore, seqDistance } from '../protocol/seq.js';

/** Where a received sequenced packet stands against the one expected. */
export type SeqPosition = 'expected' | 'duplicate' | 'ahead';

/**
 * The receiving half of a session's flow control. The receiver acknowledges only what its
 * consumer has taken: while the consumer is behind (its buffer or socket is full) the ack stays
 * where it was, the peer's window fills, and the peer's writes wait. No byte is ever refused;
 * the window the peer respects is what bounds them.
 */
export class ReceiveWindow {
  /** Seq expected next from the peer. */
  #next: number;
  /** What we may acknowledge: everything delivered while the consumer was keeping up. */
  #ackable: number;
  /** Last ack value written to the link. */
  #ackSent: number;
  /** The consumer said it is behind: acks are held until it catches up. */
  #consumerBehind = false;

  constructor(firstSeq: number) {
    this.#next = firstSeq;
    this.#ackable = firstSeq;
    this.#ackSent = firstSeq;
  }

  /** Seq expected next from the peer. */
  get next(): number {
    return this.#next;
  }

  /** Seq expected next, as far as this side may acknowledge it yet. */
  get ackable(): number {
    return this.#ackable;
  }

  /** True when an ack newer than the last one sent may go to the peer. */
  get ackPending(): boolean {
    return this.#ackable !== this.#ackSent;
  }

  /** How many packets the ack that may go now covers beyond the last one sent. */
  get packetsAwaitingAck(): number {
    return seqDistance(this.#ackSent, this.#ackable);
  }

  get consumerBehind(): boolean {
    return this.#consumerBehind;
  }

  /** Only the expected seq is delivered; older ones were delivered already. */
  position(seq: number): SeqPosition {
    if (seq === this.#next) return 'expected';
    return seqBefore(seq, this.#next) ? 'duplicate' : 'ahead';
  }

  /** The expected packet was taken; the one after it is expected now. */
  advance(): void {
    this.#next = seqAdd(this.#next, 1);
  }

  /** The consumer refused more for now: acks wait until it catches up. */
  holdAcks(): void {
    this.#consumerBehind = true;
  }

  /** Acknowledges everything received, unless the consumer is behind. */
  ackIfKeptUp(): void {
    if (!this.#consumerBehind) this.#ackable = this.#next;
  }

  /** Acknowledges everything received, behind or not (a RESET ends the stream: nothing is held for anyone). */
  ackAll(): void {
    this.#ackable = this.#next;
  }

  /** The consumer has taken what it was behind on (or it is gone): everything received may be acknowledged. */
  catchUp(): void {
    this.#consumerBehind = false;
    this.#ackable = this.#next;
  }

  /** The ack value to put in an outgoing header; records it as sent. */
  takeAck(): number {
    this.#ackSent = this.#ackable;
    return this.#ackable;
  }

  /**
   * Acknowledges nothing from `seq` on (the OPEN that created the session included) until the
   * consumer catches up: the server holds an OPEN's ack until its target has answered (§4.2).
   */
  holdFrom(seq: number): void {
    this.#ackable = seq;
    this.#ackSent = seq;
    this.#consumerBehind = true;
  }

  /** Records `seq` as acknowledged already (a packet that created the session must still be acked). */
  markAckedUpTo(seq: number): void {
    this.#ackSent = seq;
  }
}
