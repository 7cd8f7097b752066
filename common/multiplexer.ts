import { Buffer } from 'node:buffer';
import { randomInt } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { nextTick } from 'node:process';
import { systemClock, type Clock, type TimerHandle } from './clock.js';
import type { EngineConfig } from './config.js';
import { LimitError, ProtocolError } from './errors.js';
import { Fifo } from './fifo.js';
import type { Link, LinkHandler } from './link.js';
import type { Logger } from './logger.js';
import { LINK_SESSION_ID, PacketType, UINT32_MAX } from './protocol/constants.js';
import type { Frame } from './protocol/frame-decoder.js';
import { decodeOpenTarget, decodeReason, encodeOpenTarget, encodeReason } from './protocol/messages.js';
import { seqAdd, seqBefore } from './protocol/seq.js';
import { SharedLinkBudget } from './shared-link.js';
import type { QueuedPacket } from './retransmit-queue.js';
import { Session, type AckTiming, type FinishReason, type OutputTiming, type SessionOwner } from './session.js';

/** What the multiplexer tells its endpoint. */
export interface MultiplexerEvents {
  /** Server side: the peer opened a session, asking for `target` ("host:port", or null: the default). */
  session: [session: Session, target: string | null];
  /** A new link finished the resume exchange and carries the sessions again. */
  resumed: [summary: ResumeSummary];
  /** A session ended; `reason` says how. */
  'session-finished': [session: Session, reason: FinishReason, detail: string];
  /** The peer announced that it is closing for good (GOAWAY). */
  goaway: [reason: string];
}

export interface ResumeSummary {
  sessions: number;
  /** Sequenced packets written again because the peer had not acknowledged them. */
  resentPackets: number;
  /** Sessions closed because the peer no longer held their state. */
  lostSessions: number;
}

interface ControlPacket {
  type: PacketType;
  sessionId: number;
  ack: number;
  payload: Buffer;
}

/**
 * Which side of the link this is:
 *  - detached: no link; sessions keep queueing (bounded by their windows)
 *  - syncing:  a link is up and our SYNC list went out; waiting for the peer's SYNC_END
 *  - running:  sessions' packets flow
 */
export type MultiplexerPhase = 'detached' | 'syncing' | 'running';

export interface MultiplexerOptions {
  role: 'client' | 'server';
  config: EngineConfig;
  logger: Logger;
  copyWrites: boolean;
  /** First seq of a new session; random by default so that stale packets cannot line up. */
  initialSeq?: () => number;
  /** Server side: sessions the peer may hold open at once; an OPEN beyond it is reset. */
  maxSessions?: number;
  /** Times delayed acks; the system clock by default. */
  clock?: Clock;
}

/**
 * The scheduler's marks on one session. Each flag says the session is in the queue of that name;
 * an entry whose flag was cleared since (its ack rode on a data packet, the session finished) is
 * stale and skipped. Flags and FIFOs rather than Sets: see Fifo.
 */
interface Slot {
  readonly session: Session;
  /** In #ready: has unsent packets. */
  ready: boolean;
  /** In #acksDue: its ack goes out at the next flush. */
  ackDue: boolean;
  /** In #acksDelayed: its ack waits for a packet to ride on, until #ackTimer fires. */
  ackDelayed: boolean;
  /** Payload bytes written since the last packet that asked for an ack (shared-link pacing). */
  sentSinceAckRequest: number;
  /** A packet the peer acks at once, timed to measure the round trip: its seq, and when it went (-1: none). */
  probeSeq: number;
  probeSentAt: number;
}

const EMPTY = Buffer.alloc(0);

/**
 * The sessions of one client, carried over whichever link is current. Owns the round-robin
 * scheduler that puts sessions' packets on the wire, and the resume exchange:
 *
 *   client                                     server
 *     HELLO(client id)  ─────────────────────▶
 *                       ◀─────────────────────  WELCOME(known client?)
 *     SYNC(id, ack)* SYNC_END ───────────────▶
 *                       ◀─────────────────────  SYNC(id, ack)* SYNC_END
 *     on the peer's SYNC_END, each side drops what the peer acknowledged, resends the rest,
 *     and settles the sessions the peer did not list (replay, completed, or lost).
 */
export class Multiplexer extends EventEmitter<MultiplexerEvents> implements SessionOwner, LinkHandler {
  readonly #role: 'client' | 'server';
  readonly #config: EngineConfig;
  readonly #logger: Logger;
  readonly #copyWrites: boolean;
  readonly #initialSeq: () => number;
  readonly #maxSessions: number;
  readonly #clock: Clock;
  readonly #sessions = new Map<number, Slot>();
  /** Sessions with unsent packets, in round-robin order. */
  readonly #ready = new Fifo<Slot>();
  /** Sessions whose ack moved since they last sent one, and must send it at the next flush. */
  readonly #acksDue = new Fifo<Slot>();
  /** Sessions whose ack moved but may wait for a packet to ride on, until #ackTimer fires. */
  readonly #acksDelayed = new Fifo<Slot>();
  #ackTimer: TimerHandle | null = null;
  /** Unsequenced packets for the current link, written before any session's. */
  #control: ControlPacket[] = [];
  /** The peer's SYNC list for the link being resumed. */
  #peerAcks = new Map<number, number>();
  #link: Link | null = null;
  #phase: MultiplexerPhase = 'detached';
  #flushScheduled = false;
  /** Inside #flush, or handling a received frame: a flush asked for `now` waits for the tick's end. */
  #busy = false;
  #nextSessionId = 1;
  #peerKeptState = true;
  /** How much each session may have in flight while several are sending. */
  readonly #sharedLink: SharedLinkBudget;

  constructor(options: MultiplexerOptions) {
    super();
    this.#role = options.role;
    this.#config = options.config;
    this.#logger = options.logger;
    this.#copyWrites = options.copyWrites;
    this.#initialSeq = options.initialSeq ?? (() => randomInt(0, UINT32_MAX + 1));
    this.#maxSessions = options.maxSessions ?? Number.POSITIVE_INFINITY;
    this.#clock = options.clock ?? systemClock;
    this.#sharedLink = new SharedLinkBudget({ floorBytes: this.#config.sharedLinkInFlightBytes, holdMs: this.#config.sharedLinkHoldMs });
  }

  get phase(): MultiplexerPhase {
    return this.#phase;
  }

  get link(): Link | null {
    return this.#link;
  }

  get sessionCount(): number {
    return this.#sessions.size;
  }

  /**
   * Client side: a new session, whose OPEN goes out on the current or next link. `target`
   * ("host:port") asks the server for a target other than its default.
   */
  openSession(target?: string): Session {
    const openPayload = target === undefined ? undefined : encodeOpenTarget(target); // throws before any state changes
    let id = this.#nextSessionId;
    while (id === LINK_SESSION_ID || this.#sessions.has(id)) id = seqAdd(id, 1);
    this.#nextSessionId = seqAdd(id, 1);
    const firstSeq = this.#initialSeq();
    // OPEN's ack field announces the reverse direction's first seq; using the same number keeps
    // the packet self-describing (PROTOCOL.md §4).
    const session = this.#createSession(id, firstSeq, firstSeq);
    session.queueOpen(openPayload);
    return session;
  }

  /**
   * Puts sessions on a new link, which has completed HELLO/WELCOME, and sends our SYNC list.
   * `peerKeptState`: the peer still held our state when the link came up (WELCOME's flag; always
   * true on the server side, whose sessions the client opened).
   */
  attach(link: Link, peerKeptState: boolean): void {
    if (this.#link !== null) this.detach(this.#link);
    this.#link = link;
    this.#peerKeptState = peerKeptState;
    this.#phase = 'syncing';
    this.#peerAcks = new Map();
    this.#control = [];
    this.#sharedLink.newPath();
    link.setHandler(this);
    link.onDown(() => this.detach(link));
    for (const { session } of this.#sessions.values()) {
      this.#control.push({ type: PacketType.Sync, sessionId: session.id, ack: session.takeAck(), payload: EMPTY });
    }
    this.#control.push({ type: PacketType.SyncEnd, sessionId: LINK_SESSION_ID, ack: 0, payload: EMPTY });
    this.#scheduleFlush();
  }

  /** The link is gone (or superseded): sessions wait, queueing, for the next one. */
  detach(link: Link): void {
    if (this.#link !== link) return;
    this.#link = null;
    this.#phase = 'detached';
    this.#control = [];
    this.#ready.clear();
    this.#acksDue.clear();
    this.#acksDelayed.clear();
    for (const slot of this.#sessions.values()) {
      slot.ready = slot.ackDue = slot.ackDelayed = false;
      slot.probeSentAt = -1; // its ack, if any, will not time this link
    }
    this.#ackTimer?.cancel();
    this.#ackTimer = null;
  }

  /** Queues a GOAWAY for the current link (the endpoint is closing for good). */
  sendGoAway(reason: string): void {
    // Whatever is due goes first (a final ack above all), so that the peer settles it before it
    // hears that we are gone.
    this.flushNow();
    this.#control.push({ type: PacketType.GoAway, sessionId: LINK_SESSION_ID, ack: 0, payload: encodeReason(reason) });
    this.flushNow();
  }

  /** Ends every session at once (shutdown or resume window expired). */
  loseAll(message: string): void {
    for (const { session } of [...this.#sessions.values()]) session.lose(message);
  }

  // ── LinkHandler ──────────────────────────────────────────────────────────

  onFrame(link: Link, frame: Frame): void {
    // Output the frame causes (acks, packets freed by an ack) is batched for the whole chunk; and a
    // consumer that writes back synchronously must not flush in the middle of a frame's handling.
    this.#busy = true;
    try {
      this.#dispatchFrame(link, frame);
    } finally {
      this.#busy = false;
    }
  }

  #dispatchFrame(link: Link, frame: Frame): void {
    // `frame.payload` joins a payload that spanned chunks: only control packets ask for it.
    const { header } = frame;
    const type = header.type as PacketType;
    if (type === PacketType.GoAway) {
      const reason = decodeReason(frame.payload);
      this.#logger.warn({ peer: link.peer, reason }, 'peer is going away');
      this.emit('goaway', reason);
      return;
    }
    if (this.#phase === 'syncing') {
      this.#onSyncFrame(type, header.sessionId, header.ack);
      return;
    }
    switch (type) {
      case PacketType.Open:
        this.#onOpen(header.sessionId, header.seq, header.ack, frame.payload);
        return;
      case PacketType.Data:
      case PacketType.DataAckRequest:
      case PacketType.Fin:
      case PacketType.Reset:
        this.#onSequenced(type, header.sessionId, header.seq, header.ack, frame.parts);
        return;
      case PacketType.Ack: {
        const slot = this.#sessions.get(header.sessionId);
        if (slot !== undefined) this.#onAcknowledged(slot, header.ack);
        return;
      }
      default:
        throw new ProtocolError(`unexpected ${PacketType[type] ?? type} packet on a running link`);
    }
  }

  onWritable(): void {
    this.#scheduleFlush();
  }

  // ── SessionOwner ─────────────────────────────────────────────────────────

  sessionHasOutput(session: Session, timing: OutputTiming): void {
    const slot = this.#slotOf(session);
    if (this.#phase !== 'running' || slot === undefined) return;
    this.#markReady(slot);
    if (timing === 'now' && !this.#busy) this.flushNow(); // running: a link is attached
    else this.#scheduleFlush();
  }

  sessionNeedsAck(session: Session, timing: AckTiming): void {
    const slot = this.#slotOf(session);
    if (this.#phase !== 'running' || slot === undefined) return;
    if (timing === 'now') {
      this.#markAckDue(slot);
      this.#scheduleFlush();
      return;
    }
    if (slot.ackDue || slot.ackDelayed) return;
    slot.ackDelayed = true;
    this.#acksDelayed.push(slot);
    this.#ackTimer ??= this.#clock.setTimeout(this.#releaseDelayedAcks, this.#config.ackDelayMs);
  }

  /** The delay is over: acks that found no packet to ride on go out on their own. */
  readonly #releaseDelayedAcks = (): void => {
    this.#ackTimer = null;
    for (let slot = this.#acksDelayed.shift(); slot !== undefined; slot = this.#acksDelayed.shift()) {
      if (slot.ackDelayed) this.#markAckDue(slot);
    }
    this.#scheduleFlush();
  };

  sessionFinished(session: Session, reason: FinishReason, detail: string): void {
    const slot = this.#slotOf(session);
    if (slot !== undefined) {
      this.#sessions.delete(session.id);
      // Its entries in the queues are stale from now on.
      slot.ready = slot.ackDue = slot.ackDelayed = false;
    }
    // The peer's last packet (its FIN or RESET) still needs our ack, though we forget the session.
    if (session.ackPending && this.#phase === 'running') {
      this.#control.push({ type: PacketType.Ack, sessionId: session.id, ack: session.takeAck(), payload: EMPTY });
      this.#scheduleFlush();
    }
    this.emit('session-finished', session, reason, detail);
  }

  // ── Resume ───────────────────────────────────────────────────────────────

  #onSyncFrame(type: PacketType, sessionId: number, ack: number): void {
    if (type === PacketType.Sync) {
      this.#peerAcks.set(sessionId, ack);
    } else if (type === PacketType.SyncEnd) {
      this.#completeResume();
    } else {
      throw new ProtocolError(`${PacketType[type] ?? type} packet before SYNC_END`);
    }
  }

  #completeResume(): void {
    const summary: ResumeSummary = { sessions: 0, resentPackets: 0, lostSessions: 0 };
    this.#phase = 'running';
    for (const slot of [...this.#sessions.values()]) {
      const { session } = slot;
      const peerAck = this.#peerAcks.get(session.id);
      if (peerAck !== undefined) {
        summary.resentPackets += session.resumeFrom(peerAck);
      } else {
        const verdict = session.resolveUnknownToPeer(this.#peerKeptState);
        if (verdict === 'completed') {
          session.settleCompletedAtPeer();
          continue;
        }
        if (verdict === 'lost') {
          summary.lostSessions++;
          session.lose(
            this.#role === 'client'
              ? `sproxy no longer holds session ${session.id} (it restarted, or the resume window expired)`
              : `the client no longer holds session ${session.id}`,
          );
          continue;
        }
        // Never reached the peer: send it all again, OPEN first.
        summary.resentPackets += session.rewind();
      }
      summary.sessions++;
      if (session.hasUnsent) this.#markReady(slot);
      // The consumer may have read since our SYNC went out: its ack must not wait for new data.
      if (session.ackPending) this.#markAckDue(slot);
    }
    this.#peerAcks = new Map();
    this.emit('resumed', summary);
    this.#scheduleFlush();
  }

  // ── Receiving ────────────────────────────────────────────────────────────

  #onOpen(sessionId: number, seq: number, ack: number, payload: Buffer): void {
    if (this.#role !== 'server') throw new ProtocolError('OPEN sent to the client');
    if (sessionId === LINK_SESSION_ID) throw new ProtocolError('OPEN for session 0');
    if (this.#sessions.has(sessionId)) return; // a replayed OPEN of a session we already hold
    // Decoded before any state is created: a bad target must leave nothing behind.
    const target = decodeOpenTarget(payload);
    const overLimit = this.#sessions.size >= this.#maxSessions;
    const session = this.#createSession(sessionId, ack, seqAdd(seq, 1));
    session.markOpenedByPeer();
    if (overLimit) {
      // Refused the way a target refuses: the peer's application sees its connection reset.
      this.#logger.warn({ session: sessionId, limit: this.#maxSessions }, 'session refused: too many sessions for this client');
      session.on('error', () => {});
      session.destroy(new LimitError(`too many sessions for this client (limit ${this.#maxSessions})`));
      return;
    }
    this.emit('session', session, target);
  }

  #onSequenced(type: PacketType, sessionId: number, seq: number, ack: number, payload: readonly Buffer[]): void {
    const slot = this.#sessions.get(sessionId);
    if (slot === undefined) {
      // Already forgotten here. A RESET still deserves its ack, so that the peer can forget too.
      if (type === PacketType.Reset) {
        this.#control.push({ type: PacketType.Ack, sessionId, ack: seqAdd(seq, 1), payload: EMPTY });
        this.#scheduleFlush();
      }
      this.#logger.debug({ session: sessionId, type: PacketType[type] }, 'packet for an unknown session dropped');
      return;
    }
    this.#onAcknowledged(slot, ack);
    if (slot.session.receive(type, seq, payload) === 'ahead') {
      // The link is a reliable byte stream, so a gap means the peer is broken, not that data was lost.
      throw new ProtocolError(`session ${sessionId}: seq ${seq} skips ahead of the expected one`);
    }
  }

  /** The peer's ack frees room in flight: a session held back by the shared-link limit may go on. */
  #onAcknowledged(slot: Slot, ack: number): void {
    slot.session.acknowledge(ack);
    if (slot.probeSentAt >= 0 && seqBefore(slot.probeSeq, ack)) {
      this.#sharedLink.noteRoundTrip(this.#clock.now() - slot.probeSentAt);
      slot.probeSentAt = -1;
    }
    // Unsent packets mean the session is not finished (finishing clears its queue): still ours.
    if (!slot.ready && slot.session.hasUnsent) {
      this.#markReady(slot);
      this.#scheduleFlush();
    }
  }

  #createSession(id: number, sendSeq: number, receiveSeq: number): Session {
    const session = new Session({
      id,
      owner: this,
      sendSeq,
      receiveSeq,
      windowBytes: this.#config.windowBytes,
      maxFramePayloadBytes: this.#config.maxFramePayloadBytes,
      readableHighWaterMark: this.#config.sessionReadableHighWaterBytes,
      writableHighWaterMark: this.#config.sessionWritableHighWaterBytes,
      copyWrites: this.#copyWrites,
    });
    this.#sessions.set(id, { session, ready: false, ackDue: false, ackDelayed: false, sentSinceAckRequest: 0, probeSeq: 0, probeSentAt: -1 });
    return session;
  }

  /** The session's slot, if the session is still ours (a finished one may still call its owner). */
  #slotOf(session: Session): Slot | undefined {
    const slot = this.#sessions.get(session.id);
    return slot?.session === session ? slot : undefined;
  }

  #markReady(slot: Slot): void {
    if (slot.ready) return;
    slot.ready = true;
    this.#ready.push(slot);
  }

  /** Its ack goes at the next flush; an entry in #acksDelayed becomes stale. */
  #markAckDue(slot: Slot): void {
    slot.ackDelayed = false;
    if (slot.ackDue) return;
    slot.ackDue = true;
    this.#acksDue.push(slot);
  }

  // ── Sending ──────────────────────────────────────────────────────────────

  /**
   * The packet's type as written: on a shared link, DATA asks for an ack once per quarter budget,
   * or the session would stall at its budget until the peer's delayed ack. A packet the peer acks
   * at once, written while no other is being timed, times the round trip.
   */
  #typeToWrite(slot: Slot, packet: QueuedPacket, budget: number, now: number): PacketType {
    let { type } = packet;
    if (type === PacketType.Data && budget !== Number.POSITIVE_INFINITY) {
      slot.sentSinceAckRequest += packet.payload.length;
      if (slot.sentSinceAckRequest >= budget / 4) type = PacketType.DataAckRequest;
    }
    if (type === PacketType.Data) return type;
    slot.sentSinceAckRequest = 0;
    if (slot.probeSentAt < 0 && type !== PacketType.Reset) {
      slot.probeSeq = packet.seq;
      slot.probeSentAt = now;
    }
    return type;
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled || this.#link === null) return;
    this.#flushScheduled = true;
    nextTick(this.#flush);
  }

  /** Writes what can be written now (used before closing, when no later tick will come). */
  flushNow(): void {
    this.#flushScheduled = true;
    this.#flush();
  }

  readonly #flush = (): void => {
    this.#flushScheduled = false;
    const link = this.#link;
    if (link === null || link.state !== 'up') return;
    const wasBusy = this.#busy; // flushNow may come from inside a frame's handling
    this.#busy = true;
    link.cork();
    // Usually empty: not even an iterator or a fresh array then.
    if (this.#control.length > 0) {
      for (const packet of this.#control) link.writePacket(packet.type, packet.sessionId, 0, packet.ack, packet.payload);
      this.#control = [];
    }
    if (this.#phase === 'running') {
      const now = this.#clock.now();
      // Round robin, one packet per session per turn, so that a bulk session cannot bury another's
      // packets behind its backlog; stop while the socket holds more than its high-water mark.
      // A session with more to send goes to the back of the queue.
      while (this.#ready.length > 0 && link.writable) {
        const slot = this.#ready.shift() as Slot;
        if (!slot.ready) continue;
        slot.ready = false;
        const { session } = slot;
        // Over its budget on a shared link: held back until acks free room (#onAcknowledged puts it
        // back in the queue). Asked per packet: the packet before may have made the link shared.
        const budget = this.#sharedLink.budgetBytes(now);
        if (session.inFlightBytes >= budget) continue;
        const packet = session.takeNextPacket();
        if (packet !== null) {
          this.#sharedLink.noteSent(slot, now);
          const type = this.#typeToWrite(slot, packet, budget, now);
          link.writePacket(type, session.id, packet.seq, session.takeAck(), packet.payload);
          // The ack rode on this packet: the session's entries in the ack queues are stale.
          slot.ackDue = slot.ackDelayed = false;
        }
        if (session.hasUnsent) this.#markReady(slot);
      }
      for (let slot = this.#acksDue.shift(); slot !== undefined; slot = this.#acksDue.shift()) {
        if (!slot.ackDue) continue;
        slot.ackDue = false;
        if (slot.session.ackPending) link.writePacket(PacketType.Ack, slot.session.id, 0, slot.session.takeAck(), EMPTY);
      }
    }
    link.uncork();
    this.#busy = wasBusy;
    // The kernel took everything at once: there is room for more now, not at the next 'drain'.
    if (this.#ready.length > 0 && link.writable) this.#scheduleFlush();
  };
}
