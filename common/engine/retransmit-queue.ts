import { QueueFullError } from '../support/errors.js';
import type { PacketType } from '../protocol/constants.js';
import { seqBefore } from '../protocol/seq.js';

/**
 * A sequenced packet kept until the peer acknowledges it. The queue owns `payload` from the
 * moment it is appended: callers hand over a buffer nobody will mutate (the session copies user
 * buffers where it cannot be sure; see Session's `copyWrites`).
 */
export interface QueuedPacket {
  readonly type: PacketType;
  readonly seq: number;
  readonly payload: Buffer;
}

interface QueueNode extends QueuedPacket {
  next: QueueNode | null;
}

/**
 * The seed's linked-list retransmit queue: every sequenced packet sent and not yet acknowledged,
 * in sequence order. O(1) append, O(1) per packet trimmed by a cumulative ack, bounded in bytes.
 * A cursor marks the first packet not yet written on the current link; a new link rewinds it to
 * the oldest unacknowledged packet.
 */
export class RetransmitQueue {
  readonly #maxBytes: number;
  #head: QueueNode | null = null;
  #tail: QueueNode | null = null;
  /** First packet not yet written on the current link, or null when all have been. */
  #cursor: QueueNode | null = null;
  #bytes = 0;
  /** Payload bytes of the packets before the cursor: written on the current link, not yet acknowledged. */
  #sentBytes = 0;
  #length = 0;

  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
  }

  /** Payload bytes held (unacknowledged). */
  get bytes(): number {
    return this.#bytes;
  }

  /** Payload bytes written on the current link and not yet acknowledged (in flight). */
  get sentBytes(): number {
    return this.#sentBytes;
  }

  /** Packets held (unacknowledged). */
  get length(): number {
    return this.#length;
  }

  get maxBytes(): number {
    return this.#maxBytes;
  }

  /** True when some packet has not been written on the current link. */
  get hasUnsent(): boolean {
    return this.#cursor !== null;
  }

  /** True when some packet written on the current link is not acknowledged yet (an OPEN or FIN counts, though empty). */
  get hasInFlight(): boolean {
    return this.#cursor !== this.#head;
  }

  /** Seq of the oldest unacknowledged packet, or null when empty. */
  get oldestSeq(): number | null {
    return this.#head === null ? null : this.#head.seq;
  }

  /** Appends a packet at the tail; throws QueueFullError if its payload would pass the byte bound. */
  append(type: PacketType, seq: number, payload: Buffer): void {
    if (this.#bytes + payload.length > this.#maxBytes) {
      throw new QueueFullError(this.#bytes + payload.length, this.#maxBytes);
    }
    const node: QueueNode = { type, seq, payload, next: null };
    if (this.#tail === null) this.#head = node;
    else this.#tail.next = node;
    this.#tail = node;
    if (this.#cursor === null) this.#cursor = node;
    this.#bytes += payload.length;
    this.#length++;
  }

  /**
   * Drops every packet whose seq comes before `ack` (the peer's next expected seq).
   * Returns how many packets were dropped.
   */
  acknowledge(ack: number): number {
    let dropped = 0;
    while (this.#head !== null && seqBefore(this.#head.seq, ack)) {
      const node = this.#head;
      // The cursor sits on the first unsent packet: one acknowledged before it was written again
      // (after a rewind) was never in flight on this link.
      if (this.#cursor === node) this.#cursor = node.next;
      else this.#sentBytes -= node.payload.length;
      this.#head = node.next;
      node.next = null;
      this.#bytes -= node.payload.length;
      this.#length--;
      dropped++;
    }
    if (this.#head === null) this.#tail = null;
    return dropped;
  }

  /** Returns the next packet to write on the link and moves the cursor past it. */
  takeNext(): QueuedPacket | null {
    const node = this.#cursor;
    if (node === null) return null;
    this.#cursor = node.next;
    this.#sentBytes += node.payload.length;
    return node;
  }

  /** A new link: everything still held must be written again. Returns how many packets that is. */
  rewind(): number {
    this.#cursor = this.#head;
    this.#sentBytes = 0;
    return this.#length;
  }

  /** Drops everything (the session is gone). */
  clear(): void {
    this.#head = this.#tail = this.#cursor = null;
    this.#bytes = 0;
    this.#sentBytes = 0;
    this.#length = 0;
  }
}
