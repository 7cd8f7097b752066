import { randomInt } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { systemClock, type Clock } from '../support/clock.js';
import { LimitError, LinkClosedError, ProtocolError } from '../support/errors.js';
import type { Logger } from '../support/logger.js';
import { LINK_SESSION_ID, PacketType, SERVER_SESSION_ID_BIT, UINT32_MAX, type ListenStatus } from '../protocol/constants.js';
import type { Frame } from '../protocol/frame-decoder.js';
import {
  decodeOpenTarget,
  decodeReason,
  decodeRemoteOpen,
  encodeOpenTarget,
  encodeReason,
  encodeRemoteOpen,
  type RemoteOpen,
} from '../protocol/messages.js';
import { seqAdd } from '../protocol/seq.js';
import type { Link, LinkHandler } from '../transport/link.js';
import type { EngineConfig } from './config.js';
import { SendBudget } from './send-budget.js';
import { EMPTY_PAYLOAD as EMPTY, SendScheduler, type PathEstimate, type Slot } from './send-scheduler.js';
import { createTrafficCounts, type TrafficCounts } from './traffic-counts.js';
import { Session, type AckTiming, type FinishReason, type OutputTiming, type SessionOwner } from './session.js';

/** How long a lane ended with its link may take to send what it holds, at most. */
const EXPRESS_LANE_FINISH_BOUND_MS = 1000;

/** What the multiplexer tells its endpoint. */
export interface MultiplexerEvents {
  /** Server side: the peer opened a session, asking for `target` ("host:port", or null: the default). */
  session: [session: Session, target: string | null];
  /** Client side: the server opened a session for a connection to one of our remote forwards (§4.12). */
  'remote-session': [session: Session, open: RemoteOpen];
  /** Server side: the client asks us to listen for its remote forward `forward` on "bind:port" (LISTEN). */
  listen: [forward: number, address: string];
  /** Client side: the server's answer to a LISTEN. */
  'listen-reply': [forward: number, status: ListenStatus, text: string];
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
  /** Server side: an OPEN is acknowledged when the application confirms it (Session.confirmOpen). */
  confirmOpens?: boolean;
  /** Server side: sessions the peer may hold open at once; an OPEN beyond it is reset. */
  maxSessions?: number;
  /** Times delayed acks; the system clock by default. */
  clock?: Clock;
  /** The proxy's memory for send queues, shared with its other links; one of its own by default. */
  sendBudget?: SendBudget;
  /** What the sessions carried, added up here; shared with the proxy's other multiplexers. Counts of its own by default. */
  traffic?: TrafficCounts;
}

/**
 * The sessions of one client, carried over whichever link is current: the session table, the
 * dispatch of received frames to sessions, and the resume exchange (the SendScheduler puts the
 * sessions' packets on the wire):
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
  readonly #sendBudget: SendBudget;
  readonly #config: EngineConfig;
  readonly #logger: Logger;
  readonly #copyWrites: boolean;
  readonly #initialSeq: () => number;
  readonly #maxSessions: number;
  readonly #confirmOpens: boolean;
  readonly #clock: Clock;
  readonly #sessions = new Map<number, Slot>();
  readonly #scheduler: SendScheduler;
  readonly #traffic: TrafficCounts;
  /** The peer's SYNC list for the link being resumed. */
  #peerAcks = new Map<number, number>();
  #link: Link | null = null;
  /** The link's second connection for small sessions (PROTOCOL.md §4.11), once it joined. */
  #express: Link | null = null;
  #phase: MultiplexerPhase = 'detached';
  /** The next id to try, within this side's half of the id space (SERVER_SESSION_ID_BIT). */
  #nextSessionId = 1;
  #peerKeptState = true;

  constructor(options: MultiplexerOptions) {
    super();
    this.#role = options.role;
    this.#config = options.config;
    this.#logger = options.logger;
    this.#copyWrites = options.copyWrites;
    this.#initialSeq = options.initialSeq ?? (() => randomInt(0, UINT32_MAX + 1));
    this.#maxSessions = options.maxSessions ?? Number.POSITIVE_INFINITY;
    this.#confirmOpens = options.confirmOpens ?? false;
    if (this.#role === 'server') this.#nextSessionId = SERVER_SESSION_ID_BIT;
    this.#clock = options.clock ?? systemClock;
    this.#traffic = options.traffic ?? createTrafficCounts();
    this.#scheduler = new SendScheduler({ config: this.#config, clock: this.#clock, traffic: this.#traffic });
    this.#sendBudget = options.sendBudget ?? new SendBudget(this.#config.sendBudgetBytes);
  }

  get phase(): MultiplexerPhase {
    return this.#phase;
  }

  get link(): Link | null {
    return this.#link;
  }

  /** The current link's express lane, if it has one. */
  get expressLane(): Link | null {
    return this.#express;
  }

  /** The current (or last) link's path as measured: fastest round trip, best recent delivery rate. */
  get path(): PathEstimate {
    return this.#scheduler.path();
  }

  /** How long bytes have been in flight on the link without an ack moving them (0: nothing in flight). */
  ackWaitMs(): number {
    return this.#scheduler.ackWaitMs(this.#sessions.values());
  }

  /** Payload bytes held in send queues by every session charged to this multiplexer's budget. */
  get queuedSendBytes(): number {
    return this.#sendBudget.usedBytes;
  }

  get sessionCount(): number {
    return this.#sessions.size;
  }

  /**
   * Client side: a new session, whose OPEN goes out on the current or next link. `target`
   * ("host:port") asks the server for a target other than its default.
   */
  openSession(target?: string): Session {
    if (this.#role !== 'client') throw new Error('openSession is the client\'s; the server opens with openRemoteSession');
    return this.#open(target === undefined ? undefined : encodeOpenTarget(target)); // encoded (and checked) before any state changes
  }

  /** Server side: a session for a connection a client's remote forward accepted (§4.12). */
  openRemoteSession(open: RemoteOpen): Session {
    if (this.#role !== 'server') throw new Error('openRemoteSession is the server\'s');
    return this.#open(encodeRemoteOpen(open));
  }

  /** Server side or client side: a LISTEN, or its answer, on the current link (dropped without one: it is sent again on the next). */
  sendLinkMessage(type: PacketType.Listen | PacketType.ListenReply, forward: number, status: number, payload: Buffer): void {
    if (this.#phase !== 'running') return;
    this.#scheduler.queueControl({ type, sessionId: forward, ack: status, payload });
    this.#scheduler.scheduleFlush();
  }

  #open(openPayload: Buffer | undefined): Session {
    // Each side in its half of the id space: ids with SERVER_SESSION_ID_BIT are the server's.
    const half = this.#role === 'server' ? SERVER_SESSION_ID_BIT : 0;
    const inHalf = (id: number): number => ((id & ~SERVER_SESSION_ID_BIT) | half) >>> 0;
    let id = inHalf(this.#nextSessionId);
    while (id === LINK_SESSION_ID || this.#sessions.has(id)) id = inHalf(seqAdd(id, 1));
    this.#nextSessionId = inHalf(seqAdd(id, 1));
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
   * true on the server side, whose sessions the client opened). `roundTripMs`: the handshake's,
   * where it was timed (the client's HELLO to WELCOME).
   */
  attach(link: Link, peerKeptState: boolean, roundTripMs?: number): void {
    if (this.#link !== null) this.detach(this.#link);
    this.#link = link;
    this.#peerKeptState = peerKeptState;
    this.#phase = 'syncing';
    this.#peerAcks = new Map();
    this.#scheduler.attach(link, roundTripMs);
    link.setHandler(this);
    link.onDown(() => this.detach(link));
    for (const { session } of this.#sessions.values()) {
      this.#scheduler.queueControl({ type: PacketType.Sync, sessionId: session.id, ack: session.takeSyncAck(), payload: EMPTY });
    }
    this.#scheduler.queueControl({ type: PacketType.SyncEnd, sessionId: LINK_SESSION_ID, ack: 0, payload: EMPTY });
    this.#scheduler.scheduleFlush();
  }

  /** A round trip timed on `link` by the caller: counted if it is still the current link. */
  noteRoundTrip(link: Link, rttMs: number): void {
    if (this.#link === link) this.#scheduler.noteRoundTrip(rttMs);
  }

  /**
   * Adds `express`, a second connection that completed its handshake (JOIN/WELCOME), to the
   * current link: small sessions' packets go on it from now on (§4.11). Only once the resume
   * exchange is over and while the link has none; false (and nothing changes) otherwise. The two
   * live and die together: when either goes down, the link is down, and the resume exchange on the
   * next one settles what either carried.
   */
  attachExpress(express: Link): boolean {
    const link = this.#link;
    if (link === null || this.#phase !== 'running' || this.#express !== null || express.state !== 'up') return false;
    this.#express = express;
    express.setHandler(this);
    express.onDown((_express, error) => {
      if (this.#express !== express) return;
      this.#logger.info({ peer: express.peer, reason: error.message }, 'express lane down: the link goes down with it');
      link.fail(error);
    });
    this.#scheduler.attachExpress(express);
    return true;
  }

  /** The link is gone (or superseded): sessions wait, queueing, for the next one. */
  detach(link: Link): void {
    if (this.#link !== link) return;
    this.#link = null;
    this.#phase = 'detached';
    const express = this.#express;
    this.#express = null;
    // Ended, not destroyed: a reset would make the peer drop what it has not read yet there (a
    // GOAWAY above all, see sendGoAway). The lane reads on until the peer closes it too.
    void express?.finish(new LinkClosedError('its link is gone'), EXPRESS_LANE_FINISH_BOUND_MS);
    this.#scheduler.detach(this.#sessions.values());
  }

  /**
   * Sends a GOAWAY on the current link (the endpoint is closing for good), and on its express lane
   * too: the peer takes the link down when either connection closes, and it may read the lane's
   * close before the main connection's GOAWAY; from either, a GOAWAY comes before the close.
   */
  sendGoAway(reason: string): void {
    // Whatever is due goes first (a final ack above all), so that the peer settles it before it
    // hears that we are gone.
    this.flushNow();
    const payload = encodeReason(reason);
    this.#scheduler.queueControl({ type: PacketType.GoAway, sessionId: LINK_SESSION_ID, ack: 0, payload });
    this.flushNow();
    this.#express?.writePacket(PacketType.GoAway, LINK_SESSION_ID, 0, 0, payload);
  }

  /** Ends every session at once (shutdown or resume window expired). */
  loseAll(message: string): void {
    for (const { session } of [...this.#sessions.values()]) session.lose(message);
  }

  // ── LinkHandler ──────────────────────────────────────────────────────────

  onFrame(link: Link, frame: Frame): void {
    // Output the frame causes (acks, packets freed by an ack) is batched for the whole chunk; and a
    // consumer that writes back synchronously must not flush in the middle of a frame's handling.
    this.#scheduler.batched(() => this.#dispatchFrame(link, frame));
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
        this.#traffic.payloadBytesReceived += header.length;
        this.#onSequenced(type, header.sessionId, header.seq, header.ack, frame.parts);
        return;
      case PacketType.Fin:
      case PacketType.Reset:
        this.#onSequenced(type, header.sessionId, header.seq, header.ack, frame.parts);
        return;
      case PacketType.Ack: {
        const slot = this.#sessions.get(header.sessionId);
        if (slot !== undefined) this.#scheduler.acknowledged(slot, header.ack);
        return;
      }
      case PacketType.Listen:
        if (this.#role !== 'server') throw new ProtocolError('LISTEN sent to the client');
        this.emit('listen', header.sessionId, decodeReason(frame.payload));
        return;
      case PacketType.ListenReply:
        if (this.#role !== 'client') throw new ProtocolError('LISTEN_REPLY sent to the server');
        this.emit('listen-reply', header.sessionId, header.ack as ListenStatus, decodeReason(frame.payload));
        return;
      default:
        throw new ProtocolError(`unexpected ${PacketType[type] ?? type} packet on a running link`);
    }
  }

  onWritable(): void {
    this.#scheduler.scheduleFlush();
  }

  // ── SessionOwner ─────────────────────────────────────────────────────────

  sessionHasOutput(session: Session, timing: OutputTiming): void {
    const slot = this.#slotOf(session);
    if (this.#phase !== 'running' || slot === undefined) return;
    this.#scheduler.outputQueued(slot, timing);
  }

  sessionNeedsAck(session: Session, timing: AckTiming): void {
    const slot = this.#slotOf(session);
    if (this.#phase !== 'running' || slot === undefined) return;
    this.#scheduler.ackNeeded(slot, timing);
  }

  sessionFinished(session: Session, reason: FinishReason, detail: string): void {
    const slot = this.#slotOf(session);
    if (slot !== undefined) {
      this.#sessions.delete(session.id);
      this.#scheduler.forget(slot);
    }
    // The peer's last packet (its FIN or RESET) still needs our ack, though we forget the session.
    if (session.ackPending && this.#phase === 'running') {
      this.#scheduler.queueControl({ type: PacketType.Ack, sessionId: session.id, ack: session.takeAck(), payload: EMPTY });
      this.#scheduler.scheduleFlush();
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
    this.#scheduler.startSessions();
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
      if (session.hasUnsent) this.#scheduler.markReady(slot);
      // The consumer may have read since our SYNC went out: its ack must not wait for new data.
      if (session.ackPending) this.#scheduler.markAckDue(slot);
    }
    this.#peerAcks = new Map();
    this.#traffic.resentPackets += summary.resentPackets;
    this.emit('resumed', summary);
    this.#scheduler.scheduleFlush();
  }

  // ── Receiving ────────────────────────────────────────────────────────────

  #onOpen(sessionId: number, seq: number, ack: number, payload: Buffer): void {
    if (sessionId === LINK_SESSION_ID) throw new ProtocolError('OPEN for session 0');
    const peerHalf = this.#role === 'server' ? 0 : SERVER_SESSION_ID_BIT;
    if ((sessionId & SERVER_SESSION_ID_BIT) >>> 0 !== peerHalf) throw new ProtocolError(`OPEN for session ${sessionId}, an id of our own half`);
    if (this.#sessions.has(sessionId)) return; // a replayed OPEN of a session we already hold
    if (this.#role === 'client') {
      const open = decodeRemoteOpen(payload);
      const session = this.#createSession(sessionId, ack, seqAdd(seq, 1));
      session.markOpenedByPeer(this.#confirmOpens);
      this.emit('remote-session', session, open);
      return;
    }
    // Decoded before any state is created: a bad target must leave nothing behind.
    const target = decodeOpenTarget(payload);
    // The limit is on the client's own sessions: the server's (remote forwards) do not count.
    const overLimit = this.#sessions.size >= this.#maxSessions && this.#countOpenedBy(0) >= this.#maxSessions;
    const session = this.#createSession(sessionId, ack, seqAdd(seq, 1));
    session.markOpenedByPeer(this.#confirmOpens);
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
        this.#scheduler.queueControl({ type: PacketType.Ack, sessionId, ack: seqAdd(seq, 1), payload: EMPTY });
        this.#scheduler.scheduleFlush();
      }
      this.#logger.debug({ session: sessionId, type: PacketType[type] }, 'packet for an unknown session dropped');
      return;
    }
    this.#scheduler.acknowledged(slot, ack);
    if (slot.session.receive(type, seq, payload) === 'ahead') {
      // The link is a reliable byte stream, so a gap means the peer is broken, not that data was lost.
      throw new ProtocolError(`session ${sessionId}: seq ${seq} skips ahead of the expected one`);
    }
  }

  /** Sessions in one half of the id space: 0 for the client's, SERVER_SESSION_ID_BIT for the server's. */
  #countOpenedBy(half: number): number {
    let count = 0;
    for (const id of this.#sessions.keys()) if ((id & SERVER_SESSION_ID_BIT) >>> 0 === half) count++;
    return count;
  }

  #createSession(id: number, sendSeq: number, receiveSeq: number): Session {
    const session = new Session({
      id,
      owner: this,
      sendSeq,
      receiveSeq,
      windowBytes: this.#config.windowBytes,
      maxWindowBytes: this.#config.maxWindowBytes,
      budget: this.#sendBudget,
      maxFramePayloadBytes: this.#config.maxFramePayloadBytes,
      readableHighWaterMark: this.#config.sessionReadableHighWaterBytes,
      writableHighWaterMark: this.#config.sessionWritableHighWaterBytes,
      copyWrites: this.#copyWrites,
    });
    this.#sessions.set(id, SendScheduler.slotFor(session));
    this.#traffic.sessionsOpened++;
    return session;
  }

  /** The session's slot, if the session is still ours (a finished one may still call its owner). */
  #slotOf(session: Session): Slot | undefined {
    const slot = this.#sessions.get(session.id);
    return slot?.session === session ? slot : undefined;
  }

  /** Writes what can be written now (used before closing, when no later tick will come). */
  flushNow(): void {
    this.#scheduler.flushNow();
  }
}
