import { ProtocolError } from '../support/errors.js';
import { MAX_REASON_BYTES, PacketType } from '../protocol/constants.js';
import { seqAdd, seqBefore, seqBeforeOrEqual } from '../protocol/seq.js';
import { RetransmitQueue, type QueuedPacket } from './retransmit-queue.js';
import type { SendBudget } from './send-budget.js';
import { WindowGrowth } from './window-growth.js';

export interface SendWindowOptions {
  /** Seq of the first packet this side will send. */
  firstSeq: number;
  /** Most unacknowledged payload bytes in flight before writes wait, at first. */
  windowBytes: number;
  /** What the window may grow to on a path whose bandwidth-delay product needs it (window-growth.ts). */
  maxWindowBytes: number;
  /** Largest DATA payload sent. */
  maxFramePayloadBytes: number;
  /** The proxy's memory for send queues, which this queue is charged to. */
  budget: SendBudget;
  /** Called once there is room in the budget again, after the waiting write stopped on it. */
  onBudgetRoom: () => void;
}

/** When an ack was processed, and the path's fastest round trip then (null: unknown). */
export interface AckTime {
  now: number;
  minRttMs: number | null;
}

/** A write that waits for room in the window: its bytes from `offset` on are not queued yet. */
interface WaitingWrite {
  chunk: Buffer;
  offset: number;
  callback: (error?: Error | null) => void;
}

/**
 * The sending half of a session's flow control: the packets the peer has not acknowledged (the
 * retransmit queue, which holds them for a resume), the window that bounds their bytes, and the
 * one write that waits for the peer's acks to make room. The session decides when to write; this
 * decides how much may be queued and numbers what is.
 */
export class SendWindow {
  readonly #queue: RetransmitQueue;
  readonly #growth: WindowGrowth;
  readonly #budget: SendBudget;
  readonly #onBudgetRoom: () => void;
  readonly #maxFramePayloadBytes: number;
  /** A DATA_ACK_REQUEST goes out each time this many payload bytes were sent since the last one. */
  readonly #ackRequestEveryBytes: number;
  #bytesSinceAckRequest = 0;
  /** Seq the next queued packet gets. */
  #nextSeq: number;
  /** Highest cumulative ack received from the peer (our oldest unacknowledged seq). */
  #peerAck: number;
  #waiting: WaitingWrite | null = null;

  constructor(options: SendWindowOptions) {
    this.#growth = new WindowGrowth(options.windowBytes, options.maxWindowBytes);
    this.#budget = options.budget;
    this.#onBudgetRoom = options.onBudgetRoom;
    this.#maxFramePayloadBytes = options.maxFramePayloadBytes;
    // A quarter of the window: the peer's ack is asked for while three quarters are still free, so
    // the window never runs dry waiting for an ack the peer chose to delay.
    this.#ackRequestEveryBytes = Math.max(1, Math.floor(options.windowBytes / 4));
    // The queue's bound: the largest window, the one frame that may cross it, and a RESET's reason.
    this.#queue = new RetransmitQueue(this.#growth.maxBytes + options.maxFramePayloadBytes + MAX_REASON_BYTES);
    this.#nextSeq = options.firstSeq;
    this.#peerAck = options.firstSeq;
  }

  /** Seq the next queued packet gets. */
  get nextSeq(): number {
    return this.#nextSeq;
  }

  /** The peer's cumulative ack: the oldest seq it has not acknowledged. */
  get peerAck(): number {
    return this.#peerAck;
  }

  /** The window now: what it started at, or what it grew to (window-growth.ts). */
  get windowBytes(): number {
    return this.#growth.windowBytes;
  }

  /** Unacknowledged payload bytes held for retransmission. */
  get unackedBytes(): number {
    return this.#queue.bytes;
  }

  /** Payload bytes written on the current link and not yet acknowledged. */
  get inFlightBytes(): number {
    return this.#queue.sentBytes;
  }

  /** Unacknowledged packets held for retransmission. */
  get unackedPackets(): number {
    return this.#queue.length;
  }

  get hasUnsent(): boolean {
    return this.#queue.hasUnsent;
  }

  /** Payload bytes queued and not yet written on the current link. */
  get unsentBytes(): number {
    return this.#queue.bytes - this.#queue.sentBytes;
  }

  /** True while some packet written on the current link awaits its ack. */
  get hasInFlight(): boolean {
    return this.#queue.hasInFlight;
  }

  /** True while a write waits for room. */
  get hasWaitingWrite(): boolean {
    return this.#waiting !== null;
  }

  /** True when `bytes` can be queued at once, as one DATA frame. */
  fitsOneFrame(bytes: number): boolean {
    return bytes <= this.#maxFramePayloadBytes && this.#hasRoom();
  }

  /** Queues a sequenced packet whatever the window says (OPEN, FIN, RESET, a frame that fit). */
  append(type: PacketType, payload: Buffer): void {
    this.#queue.append(type, this.#nextSeq, payload);
    this.#budget.charge(payload.length);
    this.#nextSeq = seqAdd(this.#nextSeq, 1);
  }

  /** Queues one DATA payload as it is (the caller checked fitsOneFrame). */
  appendData(payload: Buffer): void {
    this.append(this.#nextDataType(payload.length), payload);
  }

  /**
   * Processes the peer's cumulative ack; returns true when it moved. An ack behind the one we
   * hold is stale and ignored: the peer's packets travel on two connections (the express lane,
   * PROTOCOL.md §4.11), so an older ack can arrive after a newer one. Throws ProtocolError for an
   * ack past what we have sent. `at`: when, on which path, for the window's growth (none for the
   * ack a resume reports: it spans the outage).
   */
  acknowledge(ack: number, sessionId: number, at?: AckTime): boolean {
    if (ack === this.#peerAck || seqBefore(ack, this.#peerAck)) return false;
    if (!seqBeforeOrEqual(ack, this.#nextSeq)) {
      throw new ProtocolError(`session ${sessionId}: ack ${ack} outside the unacknowledged range [${this.#peerAck}, ${this.#nextSeq}]`);
    }
    this.#peerAck = ack;
    const queuedBefore = this.#queue.bytes;
    this.#queue.acknowledge(ack);
    const freed = queuedBefore - this.#queue.bytes;
    this.#budget.release(freed);
    if (at !== undefined) this.#growth.noteAcknowledged(freed, at.now, at.minRttMs);
    return true;
  }

  /** Next packet to write on the link, or null. */
  takeNext(): QueuedPacket | null {
    return this.#queue.takeNext();
  }

  /** Everything unacknowledged goes out again on a new link. Returns how many packets that is. */
  rewind(): number {
    this.#growth.restart();
    return this.#queue.rewind();
  }

  /** Drops every queued packet (the session is finished), and its charge to the budget. */
  clear(): void {
    this.#budget.release(this.#queue.bytes);
    this.#budget.cancelWait(this.#onBudgetRoom);
    this.#queue.clear();
  }

  /** Makes `chunk` the waiting write; `pump` queues it as room allows, then calls `callback`. */
  startWrite(chunk: Buffer, callback: (error?: Error | null) => void): void {
    this.#waiting = { chunk, offset: 0, callback };
  }

  /** Adds `chunk` behind what the waiting write has not queued yet (a source that did not pause in time). */
  extendWaitingWrite(chunk: Buffer): void {
    const waiting = this.#waiting;
    if (waiting === null) return;
    waiting.chunk = Buffer.concat([waiting.chunk.subarray(waiting.offset), chunk]);
    waiting.offset = 0;
  }

  /** Sets what the waiting write calls once all of it is queued. */
  whenWriteQueued(callback: (error?: Error | null) => void): void {
    if (this.#waiting !== null) this.#waiting.callback = callback;
  }

  /** Runs `next` after the waiting write's own callback, with the same outcome. */
  afterWaitingWrite(next: (error?: Error | null) => void): void {
    const waiting = this.#waiting;
    if (waiting === null) return;
    const own = waiting.callback;
    waiting.callback = (error) => {
      own(error);
      next(error);
    };
  }

  /** The waiting write will never be queued: its callback gets `error`. */
  abandonWaitingWrite(error: Error): void {
    const waiting = this.#waiting;
    this.#waiting = null;
    this.#budget.cancelWait(this.#onBudgetRoom);
    waiting?.callback(error);
  }

  /**
   * Queues as much of the waiting write as the window allows, in frames. Returns true when
   * anything was queued. The caller then calls completeWriteIfQueued, after telling whoever writes
   * the packets (so that they are scheduled before the writer's callback runs).
   */
  pump(): boolean {
    const waiting = this.#waiting;
    if (waiting === null) return false;
    let queued = false;
    while (waiting.offset < waiting.chunk.length && this.#hasRoom()) {
      const end = Math.min(waiting.chunk.length, waiting.offset + this.#maxFramePayloadBytes);
      // A chunk that fits one frame (the usual socket read) is queued as it is, not as a view of itself.
      const payload = waiting.offset === 0 && end === waiting.chunk.length ? waiting.chunk : waiting.chunk.subarray(waiting.offset, end);
      this.appendData(payload);
      waiting.offset = end;
      queued = true;
    }
    if (waiting.offset < waiting.chunk.length) {
      // Stopped: by the window (which may grow, if it is what holds the session back), or by the
      // proxy's budget (which wakes us when acks free some of it).
      if (this.#queue.bytes >= this.#growth.windowBytes) this.#growth.noteWindowFull();
      else this.#budget.waitForRoom(this.#onBudgetRoom);
    }
    return queued;
  }

  /** Completes the waiting write (its callback) if all of it is queued. */
  completeWriteIfQueued(): void {
    const waiting = this.#waiting;
    if (waiting === null || waiting.offset < waiting.chunk.length) return;
    this.#waiting = null;
    waiting.callback();
  }

  /** Whether one more frame may be queued: the window has room, and so has the budget (or our guaranteed share). */
  #hasRoom(): boolean {
    const queued = this.#queue.bytes;
    return queued < this.#growth.windowBytes && this.#budget.mayQueue(queued);
  }

  /**
   * DATA, except once per quarter window a DATA_ACK_REQUEST: the peer delays its acks for plain
   * DATA (hoping to piggyback them), and this bounds how much of our window that may hold up.
   */
  #nextDataType(bytes: number): PacketType {
    this.#bytesSinceAckRequest += bytes;
    if (this.#bytesSinceAckRequest < this.#ackRequestEveryBytes) return PacketType.Data;
    this.#bytesSinceAckRequest = 0;
    return PacketType.DataAckRequest;
  }
}
