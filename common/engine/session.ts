import { Buffer } from 'node:buffer';
import { Duplex } from 'node:stream';
import { ProtocolError, SessionLostError, SessionResetError } from '../support/errors.js';
import { PacketType } from '../protocol/constants.js';
import { decodeReason, encodeReason } from '../protocol/messages.js';
import { seqAdd } from '../protocol/seq.js';
import { ReceiveWindow } from './receive-window.js';
import type { QueuedPacket } from './retransmit-queue.js';
import type { SendBudget } from './send-budget.js';
import { SendWindow, type AckTime } from './send-window.js';

/**
 * Protocol state of one session, in the manner of TCP's:
 *  - open:         both directions carry data
 *  - fin-sent:     we queued our FIN; the peer may still send
 *  - fin-received: the peer's FIN arrived; we may still send
 *  - fin-both:     both FINs; waiting for the peer to acknowledge ours
 *  - reset-sent:   we queued a RESET; waiting for the peer to acknowledge it
 *  - finished:     nothing more to send or receive; the owner forgets the session
 */
export type SessionState = 'open' | 'fin-sent' | 'fin-received' | 'fin-both' | 'reset-sent' | 'finished';

/** How a sequenced packet was taken by `receive`. */
export type ReceiveVerdict = 'accepted' | 'duplicate' | 'ahead';

/**
 * How soon an ack that moved should reach the peer: `now` when the peer may be waiting on it (it
 * asked, or its FIN, or our consumer caught up after holding acks back), `delayed` otherwise, so
 * that it can ride on our next packet of the session instead of costing a packet of its own.
 */
export type AckTiming = 'now' | 'delayed';

/**
 * How soon queued packets should go out: `now` for bytes read from a socket (one read is one
 * event-loop callback, so nothing would join them by waiting; writing them at once saves a tick
 * and takes the tick's work off the round trip), `batched` at the end of the current tick, so that
 * several writes or acks made in one go leave in one system call.
 */
export type OutputTiming = 'now' | 'batched';

/** Why a session finished, for the owner's log. */
export type FinishReason = 'closed' | 'reset-by-peer' | 'reset-sent' | 'lost';

/** What a session asks of the multiplexer that carries it. */
export interface SessionOwner {
  /** New packets are queued for the link, to be written as soon as `timing` says. */
  sessionHasOutput(session: Session, timing: OutputTiming): void;
  /** The session's cumulative ack moved and should reach the peer, as soon as `timing` says. */
  sessionNeedsAck(session: Session, timing: AckTiming): void;
  /** The session's protocol state is finished: forget it. Called once. */
  sessionFinished(session: Session, reason: FinishReason, detail: string): void;
}

export interface SessionOptions {
  id: number;
  owner: SessionOwner;
  /** Seq of the first packet this side will send. */
  sendSeq: number;
  /** Seq of the first packet expected from the peer. */
  receiveSeq: number;
  /** Most unacknowledged payload bytes in flight before writes wait (flow control), at first. */
  windowBytes: number;
  /** What the window may grow to on a long fat path. */
  maxWindowBytes: number;
  /** The proxy's memory for send queues (shared by every session of every link). */
  budget: SendBudget;
  /** Largest DATA payload this side sends. */
  maxFramePayloadBytes: number;
  /** Readable buffer level above which acks are held back until the consumer reads. */
  readableHighWaterMark: number;
  writableHighWaterMark: number;
  /**
   * Copy written buffers before queueing them. The retransmit queue keeps them until the peer
   * acknowledges, long after the write callback; a caller that reuses buffers needs this on.
   */
  copyWrites: boolean;
}

/**
 * Where a bridged session's received bytes go instead of its Readable side: the local socket it
 * is spliced to. Writing to it directly skips a Readable, a pipe and a Writable per chunk, which
 * on a bulk transfer cost more CPU than the framing does.
 */
export interface SessionSink {
  /**
   * Takes one DATA payload, in order: one buffer, or the slices of received chunks it arrived in
   * (never empty). False when full: acks are held until `sinkDrained()`.
   */
  write(payload: Buffer | readonly Buffer[]): boolean;
  /** The peer's FIN: nothing more will come. */
  end(): void;
}

const NOTHING_TO_CALL = (): void => {};

/**
 * One user byte stream carried over the link, exposed as a Duplex. Writes become sequenced DATA
 * packets kept until acknowledged (SendWindow); received packets are delivered exactly once and
 * in order. Acks follow what the consumer has taken (ReceiveWindow), which is the flow control: a
 * consumer that stops reading stops the acks, and the peer's writes then wait on its window.
 * This class is the stream plumbing and the protocol state machine around those two.
 */
export class Session extends Duplex {
  readonly id: number;
  readonly #owner: SessionOwner;
  readonly #send: SendWindow;
  /** push() (or the sink) said the consumer is behind: it holds acks until the consumer catches up. */
  readonly #receive: ReceiveWindow;
  readonly #copyWrites: boolean;
  #state: SessionState = 'open';
  /** Set by `deliverTo`: received bytes bypass the Readable side. */
  #sink: SessionSink | null = null;
  /** The peer's FIN was received (a sink attached later must still be ended). */
  #peerFinished = false;
  /** Some packet of ours went out on a link: the peer may have seen it even without an ack. */
  #everWritten = false;
  /** Server side: the OPEN's ack waits for confirmOpen() (the target has answered). */
  #awaitingConfirm = false;
  /** Client side: 'established' was emitted (the peer acknowledged the OPEN, and no RESET came with the ack). */
  #established = false;
  /** The OPEN's ack arrived; 'established' follows once the chunk it came in is handled. */
  #establishing = false;
  /** Server side: destroyed while #awaitingConfirm; the OPEN is acknowledged by the RESET only. */
  #refusedUnconfirmed = false;
  /** First seqs of the session, to tell whether the peer has ever seen it (resolveUnknownToPeer). */
  #initialSendSeq: number;
  #initialReceiveSeq: number;

  constructor(options: SessionOptions) {
    super({
      allowHalfOpen: true,
      readableHighWaterMark: options.readableHighWaterMark,
      writableHighWaterMark: options.writableHighWaterMark,
    });
    this.id = options.id;
    this.#owner = options.owner;
    this.#copyWrites = options.copyWrites;
    this.#send = new SendWindow({
      firstSeq: options.sendSeq,
      windowBytes: options.windowBytes,
      maxWindowBytes: options.maxWindowBytes,
      maxFramePayloadBytes: options.maxFramePayloadBytes,
      budget: options.budget,
      onBudgetRoom: () => this.#pumpWaitingWrite('batched'),
    });
    this.#receive = new ReceiveWindow(options.receiveSeq);
    this.#initialSendSeq = options.sendSeq;
    this.#initialReceiveSeq = options.receiveSeq;
  }

  get state(): SessionState {
    return this.#state;
  }

  /** The send window now: as configured, or grown to the path. */
  get windowBytes(): number {
    return this.#send.windowBytes;
  }

  /** Unacknowledged payload bytes held for retransmission. */
  get unackedBytes(): number {
    return this.#send.unackedBytes;
  }

  /** Payload bytes written on the current link and not yet acknowledged. */
  get inFlightBytes(): number {
    return this.#send.inFlightBytes;
  }

  /** Unacknowledged packets held for retransmission. */
  get unackedPackets(): number {
    return this.#send.unackedPackets;
  }

  get hasUnsent(): boolean {
    return this.#send.hasUnsent;
  }

  /** Payload bytes queued and not yet written on the current link. */
  get unsentBytes(): number {
    return this.#send.unsentBytes;
  }

  /** True while some packet written on the current link awaits its ack. */
  get hasInFlight(): boolean {
    return this.#send.hasInFlight;
  }

  /** True when an ack newer than the last one sent may go to the peer. */
  get ackPending(): boolean {
    // A session refused before its OPEN was answered acks only on its RESET (see _destroy).
    return !this.#refusedUnconfirmed && this.#receive.ackPending;
  }

  /** How many of the peer's packets the ack that may go now would acknowledge for the first time. */
  get packetsAwaitingAck(): number {
    return this.ackPending ? this.#receive.packetsAwaitingAck : 0;
  }

  /**
   * The ack for this session's SYNC on a new link (§5): what we took, or, for a session refused
   * before its OPEN was answered, the OPEN still unacknowledged (the RESET, sent again, acks it).
   */
  takeSyncAck(): number {
    return this.#refusedUnconfirmed ? this.#initialReceiveSeq : this.takeAck();
  }

  /** Seq expected next from the peer, as far as this side may acknowledge it yet. */
  get ackable(): number {
    return this.#receive.ackable;
  }

  /** True once anything of ours was acknowledged or anything of the peer's received. */
  get peerHasState(): boolean {
    return this.#send.peerAck !== this.#initialSendSeq || this.#receive.next !== this.#initialReceiveSeq;
  }

  /**
   * Client side: queue the OPEN that creates the session at the peer. Its `ack` field announces the
   * first seq the peer will use (PROTOCOL.md §4), which equals our receiveSeq.
   */
  queueOpen(payload: Buffer = Buffer.alloc(0)): void {
    this.#append(PacketType.Open, payload);
    this.#owner.sessionHasOutput(this, 'batched');
  }

  /**
   * Server side: the session was created by the peer's OPEN, which counts as received. With
   * `confirmLater`, its ack (and that of anything after it) waits for confirmOpen(), or goes with
   * the RESET if the session is destroyed first: the client can tell a target that answered from
   * one that did not (a SOCKS reply waits for it, PROTOCOL.md §4.2).
   */
  markOpenedByPeer(confirmLater = false): void {
    this.#initialSendSeq = this.#send.nextSeq;
    this.#initialReceiveSeq = seqAdd(this.#receive.next, -1);
    if (confirmLater) {
      this.#awaitingConfirm = true;
      this.#receive.holdFrom(this.#initialReceiveSeq);
      return;
    }
    // The OPEN itself must be acknowledged, so that the peer can drop it from its queue.
    this.#receive.markAckedUpTo(this.#initialReceiveSeq);
    this.#owner.sessionNeedsAck(this, 'now');
  }

  /** Server side: the session's target answered; the OPEN (and what came after it) may be acknowledged. */
  confirmOpen(): void {
    if (!this.#awaitingConfirm) return;
    this.#awaitingConfirm = false;
    // What waits in the Readable side below its mark is acknowledged, as it would have been on
    // arrival. Above it, the consumer's reads release the acks (_read); Node calls _read no more
    // after one that pushed nothing, so an empty push lets it be called again.
    if (this.#sink !== null || this.readableLength < this.readableHighWaterMark) this.#catchUpAck();
    else this.push(Buffer.alloc(0));
  }

  /** Client side: whether the peer has acknowledged the OPEN ('established' was emitted). */
  get established(): boolean {
    return this.#established;
  }

  /** Next packet to write on the link, or null. The caller stamps the current ack on it. */
  takeNextPacket(): QueuedPacket | null {
    const packet = this.#send.takeNext();
    if (packet !== null) this.#everWritten = true;
    return packet;
  }

  /** The ack value to put in an outgoing header; records it as sent. */
  takeAck(): number {
    return this.#receive.takeAck();
  }

  /**
   * Processes the peer's cumulative ack (carried by every packet of the session). `at`: when it
   * arrived and the path's fastest round trip, which the window grows from.
   */
  acknowledge(ack: number, at?: AckTime): void {
    if (!this.#send.acknowledge(ack, this.id, at)) return;
    if (!this.#established) this.#noteEstablished();
    this.#pumpWaitingWrite('batched');
    this.#finishIfDone();
  }

  /**
   * Takes one sequenced packet from the peer. Only the packet whose seq is the one expected is
   * delivered; older ones are duplicates of what was already delivered and are ignored.
   */
  receive(type: PacketType, seq: number, payload: Buffer | readonly Buffer[]): ReceiveVerdict {
    const position = this.#receive.position(seq);
    if (position !== 'expected') return position;
    if (this.#state === 'finished') return 'duplicate';
    switch (type) {
      case PacketType.Data:
        this.#onData(payload);
        this.#owner.sessionNeedsAck(this, 'delayed');
        return 'accepted';
      case PacketType.DataAckRequest:
        this.#onData(payload);
        this.#owner.sessionNeedsAck(this, 'now');
        return 'accepted';
      case PacketType.Fin:
        this.#onFin();
        this.#owner.sessionNeedsAck(this, 'now');
        return 'accepted';
      case PacketType.Reset:
        this.#onReset(decodeReason(Buffer.isBuffer(payload) ? payload : Buffer.concat(payload)));
        return 'accepted';
      default:
        throw new ProtocolError(`session ${this.id}: unexpected sequenced packet type ${type}`);
    }
  }

  /** `payload`: one buffer, or the slices of received chunks it arrived in (delivered as they are). */
  #onData(payload: Buffer | readonly Buffer[]): void {
    if (this.#state === 'fin-received' || this.#state === 'fin-both') {
      throw new ProtocolError(`session ${this.id}: DATA after FIN`);
    }
    this.#receive.advance();
    // A destroyed stream takes nothing more; its bytes are acknowledged and dropped, as TCP does after close.
    if (this.#sink !== null) {
      // Empty either way when 0: slices are never empty, so no slices means no bytes.
      if (payload.length > 0 && !this.destroyed && !this.#sink.write(payload)) this.#receive.holdAcks();
    } else if (Buffer.isBuffer(payload)) {
      this.#deliver(payload);
    } else {
      for (const part of payload) this.#deliver(part);
    }
    this.#receive.ackIfKeptUp();
  }

  #deliver(bytes: Buffer): void {
    if (bytes.length > 0 && !this.destroyed && !this.push(bytes)) this.#receive.holdAcks();
  }

  #onFin(): void {
    if (this.#state === 'fin-received' || this.#state === 'fin-both') {
      throw new ProtocolError(`session ${this.id}: second FIN`);
    }
    this.#receive.advance();
    this.#peerFinished = true;
    if (this.#receive.consumerBehind && this.#sink === null) {
      // Node calls _read no more once the stream has ended, so the held ack is released when the
      // consumer has taken everything, which 'end' tells.
      this.once('end', () => this.#catchUpAck());
    } else {
      this.#receive.ackIfKeptUp();
    }
    if (!this.destroyed) {
      this.#sink?.end();
      this.push(null);
    }
    // Our RESET crossed the peer's FIN: the session is aborted and waits only for the RESET's ack.
    if (this.#state === 'reset-sent') return;
    this.#moveTo(this.#state === 'fin-sent' ? 'fin-both' : 'fin-received');
    this.#finishIfDone();
  }

  /**
   * The peer acknowledged our first packet (the OPEN, on the client): 'established', once. Emitted
   * after the chunk being handled, so that a RESET carrying that ack (a target that refused)
   * destroys the session first and 'established' never comes.
   */
  #noteEstablished(): void {
    if (this.#establishing || this.#send.peerAck === this.#initialSendSeq) return;
    this.#establishing = true;
    queueMicrotask(() => {
      if (this.destroyed) return;
      this.#established = true;
      this.emit('established');
    });
  }

  /** The consumer has taken what it was behind on: acknowledge everything received. */
  #catchUpAck(): void {
    this.#receive.catchUp();
    // The peer's window may be full of what we held back: it is waiting for this ack.
    if (this.ackPending) this.#owner.sessionNeedsAck(this, 'now');
  }

  #onReset(reason: string): void {
    this.#receive.advance();
    this.#receive.ackAll();
    // The peer's final ack arrives through the owner, which acks the RESET before forgetting us.
    this.#finish('reset-by-peer', reason);
    this.destroy(new SessionResetError(reason));
  }

  /**
   * A new link is up and the peer reported, in SYNC, the next seq it expects from us. Everything
   * it has not acknowledged is written again. Returns how many packets that is.
   */
  resumeFrom(peerAck: number): number {
    this.acknowledge(peerAck);
    return this.rewind();
  }

  /** Writes everything unacknowledged again on the new link. Returns how many packets that is. */
  rewind(): number {
    return this.#send.rewind();
  }

  /**
   * The peer does not know this session after a new link came up. Returns what that means:
   *  - completed: it was over on both sides, and the peer forgot it first;
   *  - replay:    the peer never saw it, so it starts afresh there, OPEN first. Certain when the
   *               peer kept its state for us (it would hold the session had the OPEN arrived), or
   *               when nothing of the session ever went out on a link;
   *  - lost:      the peer lost its state (restart, expiry) and may have seen the session: to replay
   *               it could hand the target the same bytes twice, so it is closed instead.
   */
  resolveUnknownToPeer(peerKeptState: boolean): 'replay' | 'completed' | 'lost' {
    if (this.#state === 'fin-both' || this.#state === 'reset-sent') return 'completed';
    if (this.peerHasState) return 'lost';
    return peerKeptState || !this.#everWritten ? 'replay' : 'lost';
  }

  /** Abandons the session because its state is gone at the peer; the consumer sees an error. */
  lose(message: string): void {
    if (this.#state === 'finished') return;
    this.#finish('lost', message);
    this.destroy(new SessionLostError(message));
  }

  /**
   * The peer already forgot a session that was over on both sides (our final ack, or its ack of our
   * last packet, was lost with the old link). Nothing is left to send; what was received stays
   * readable.
   */
  settleCompletedAtPeer(): void {
    if (this.#state === 'finished') return;
    this.#finish(this.#state === 'reset-sent' ? 'reset-sent' : 'closed', 'completed at the peer');
  }

  /**
   * Splices the session to a local socket without the stream layers: what arrives from now on
   * (and whatever arrived before, still buffered) goes to `sink`, and the sink's owner sends with
   * `send`. The Readable side stays flowing and empty, so that it still ends at the peer's FIN.
   */
  deliverTo(sink: SessionSink): void {
    this.#sink = sink;
    // Bytes that came before the sink (sproxy connects to its target after the OPEN) go first.
    let keptUp = true;
    for (let buffered: Buffer | null = this.read(); buffered !== null; buffered = this.read()) {
      keptUp = sink.write(buffered) && keptUp;
    }
    if (keptUp) this.sinkDrained();
    else this.#receive.holdAcks();
    if (this.#peerFinished && !this.destroyed) sink.end();
    this.resume();
  }

  /** The sink drained after refusing bytes: acknowledge what it holds back no more. */
  sinkDrained(): void {
    if (this.#receive.consumerBehind && !this.#awaitingConfirm) this.#catchUpAck();
  }

  /**
   * Queues `chunk` as `write` would, without the Writable machinery in between (see `deliverTo`).
   * Returns false when the window could not take all of it: the rest waits for the peer's acks,
   * and `onQueued` is called once it is queued; the caller pauses its source until then. A session
   * that can no longer send drops the chunk: it is being torn down, and its socket with it.
   * What is queued goes on the link at once (OutputTiming `now`): `chunk` is one socket read.
   */
  send(chunk: Buffer, onQueued: () => void): boolean {
    if (this.#state !== 'open' && this.#state !== 'fin-received') return true;
    if (chunk.length === 0) return true;
    const owned = this.#copyWrites ? Buffer.from(chunk) : chunk;
    if (this.#send.hasWaitingWrite) {
      // A caller that did not pause in time: its bytes wait behind the others, in order.
      this.#send.extendWaitingWrite(owned);
      return false;
    }
    // The usual read: one frame's worth with the window open, queued as it is.
    if (this.#send.fitsOneFrame(owned.length)) {
      this.#send.appendData(owned);
      this.#owner.sessionHasOutput(this, 'now');
      return true;
    }
    this.#send.startWrite(owned, NOTHING_TO_CALL);
    this.#pumpWaitingWrite('now');
    if (!this.#send.hasWaitingWrite) return true;
    this.#send.whenWriteQueued(onQueued);
    return false;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.#state !== 'open' && this.#state !== 'fin-received') {
      callback(new SessionLostError(`session ${this.id} can no longer send (state ${this.#state})`));
      return;
    }
    const owned = this.#copyWrites ? Buffer.from(chunk) : chunk;
    this.#send.startWrite(owned, callback);
    this.#pumpWaitingWrite('batched');
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (this.#send.hasWaitingWrite) {
      // Only a `send` can still be waiting here (the Writable waits for its own writes): the FIN
      // must follow its bytes.
      this.#send.afterWaitingWrite((error) => {
        if (error) callback(error);
        else this._final(callback);
      });
      return;
    }
    if (this.#state === 'open' || this.#state === 'fin-received') {
      this.#append(PacketType.Fin, Buffer.alloc(0));
      this.#moveTo(this.#state === 'open' ? 'fin-sent' : 'fin-both');
      this.#owner.sessionHasOutput(this, 'batched');
    }
    callback();
  }

  override _read(): void {
    if (this.#receive.consumerBehind && this.#sink === null && !this.#awaitingConfirm) this.#catchUpAck();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.#send.hasWaitingWrite) this.#send.abandonWaitingWrite(error ?? new SessionLostError(`session ${this.id} destroyed`));
    if (this.#awaitingConfirm) {
      // Refused before its target answered: the OPEN's ack goes with the RESET and nowhere else
      // (not alone, not in a SYNC), so that the peer never takes the OPEN as answered (§4.2).
      this.#awaitingConfirm = false;
      this.#refusedUnconfirmed = true;
      this.#receive.ackAll();
    } else if (this.#receive.consumerBehind) {
      // What the consumer had not read is dropped with the stream; it must not hold the acks back.
      this.#catchUpAck();
    }
    // Destroyed before both directions closed cleanly: the application aborted, so tell the peer.
    if (this.#state === 'open' || this.#state === 'fin-sent' || this.#state === 'fin-received') {
      this.#append(PacketType.Reset, encodeReason(error?.message ?? 'closed by application'));
      this.#moveTo('reset-sent');
      this.#owner.sessionHasOutput(this, 'batched');
    }
    callback(error);
  }

  /** Queues as much of the waiting write as the window allows; completes it when all is queued. */
  #pumpWaitingWrite(timing: OutputTiming): void {
    if (this.#send.pump()) this.#owner.sessionHasOutput(this, timing);
    this.#send.completeWriteIfQueued();
  }

  #append(type: PacketType, payload: Buffer): void {
    this.#send.append(type, payload);
  }

  #finishIfDone(): void {
    if (this.#send.unackedPackets > 0) return;
    if (this.#state === 'fin-both') this.#finish('closed', 'both sides closed');
    else if (this.#state === 'reset-sent') this.#finish('reset-sent', 'reset acknowledged');
  }

  #finish(reason: FinishReason, detail: string): void {
    if (this.#state === 'finished') return;
    this.#moveTo('finished');
    this.#send.clear();
    this.#owner.sessionFinished(this, reason, detail);
  }

  #moveTo(state: SessionState): void {
    this.#state = state;
  }
}
