import { Buffer } from 'node:buffer';
import { nextTick } from 'node:process';
import type { Clock, TimerHandle } from '../support/clock.js';
import { PacketType } from '../protocol/constants.js';
import { seqBefore } from '../protocol/seq.js';
import type { Link } from '../transport/link.js';
import type { EngineConfig } from './config.js';
import { Fifo } from './fifo.js';
import type { QueuedPacket } from './retransmit-queue.js';
import type { AckTiming, OutputTiming, Session } from './session.js';
import { RttEstimator } from './rtt-estimator.js';
import { ACK_REQUESTS_PER_BUDGET, ACK_REQUESTS_PER_BUDGET_EXPRESS, SharedLinkBudget } from './shared-link.js';
import { createTrafficCounts, type TrafficCounts } from './traffic-counts.js';

/** An unsequenced packet for the current link (SYNC, SYNC_END, GOAWAY, a lone ACK). */
export interface ControlPacket {
  type: PacketType;
  sessionId: number;
  ack: number;
  payload: Buffer;
}

/**
 * The scheduler's marks on one session. Each flag says the session is in the queue of that name;
 * an entry whose flag was cleared since (its ack rode on a data packet, the session finished) is
 * stale and skipped. Flags and FIFOs rather than Sets: see Fifo.
 */
export interface Slot {
  readonly session: Session;
  /** In #ready: has unsent packets. */
  ready: boolean;
  /** In #acksDue: its ack goes out at the next flush. */
  ackDue: boolean;
  /** In #acksDelayed: its ack waits for a packet to ride on, until #ackTimer fires. */
  ackDelayed: boolean;
  /** In #acksHeld: its ack waits longer, for the session's next keystroke (see ackHoldMs), until ackHeldUntil. */
  ackHeld: boolean;
  ackHeldUntil: number;
  /** Payload bytes written since the last packet that asked for an ack (shared-link pacing). */
  sentSinceAckRequest: number;
  /** A packet the peer acks at once, timed to measure the round trip: its seq, and when it went (-1: none). */
  probeSeq: number;
  probeSentAt: number;
  /** Since when the session has had bytes in flight with no ack moving them (-1: none in flight). */
  waitingSince: number;
  /** Its packets in flight went on the express lane (they all go on one lane: see #laneFor). */
  onExpress: boolean;
  /** Counted in #mainLaneWaiting: it has packets in flight on the main lane. */
  waitingOnMain: boolean;
}

/**
 * Who may take the express lane. A session chooses its lane only when nothing of it is in flight,
 * so that its packets reach the peer in order though the lanes are two TCP connections: the acks
 * of everything it wrote on one lane have come back before it writes on the other. It takes the
 * express lane when what it has to send is a keystroke's or a screen's worth; while on it, it may
 * have EXPRESS_IN_FLIGHT_BYTES in flight, and once its backlog grows past EXPRESS_BACKLOG_BYTES it
 * stops there, lets its acks come back (one round trip) and goes on in the main lane.
 */
export const EXPRESS_BACKLOG_BYTES = 8 * 1024;
export const EXPRESS_IN_FLIGHT_BYTES = 16 * 1024;

/**
 * The least time a peer waits for an ack before it suspects the path (the path watch's floor).
 * An ack held back on purpose (ackHoldMs) must leave the peer's wait under it, a round trip to spare.
 */
export const ACK_WAIT_MIN_MS = 300;
/** The longest an ack of a keystroke session's lone packet is held for the session's next packet. */
export const ACK_HOLD_MAX_MS = 100;

/**
 * How long the ack of one packet of a session on the express lane may wait for the session's next
 * packet to ride on, as TCP's delayed ack waits for an echo (RFC 1122 §4.2.3.2). A typist's echo
 * would otherwise cost the express lane two packets per key, its lone ack and the next key; with
 * more than BBR's ProbeRTT allowance (4 packets) in a round trip, keys queue in the kernel for
 * 200 ms every 10 s. Held at most ACK_HOLD_MAX_MS, never less than the usual delay, and short
 * enough on a long or queued path that the peer's wait (a round trip, the hold and perhaps the
 * usual delay after it) stays under its floor. `roundTripMs`: the larger of the path's fastest and
 * smoothed round trips, null before either is measured.
 */
export function ackHoldMs(ackDelayMs: number, roundTripMs: number | null): number {
  if (roundTripMs === null) return ackDelayMs;
  return Math.max(ackDelayMs, Math.min(ACK_HOLD_MAX_MS, ACK_WAIT_MIN_MS - 2 * roundTripMs - ackDelayMs));
}

export const EMPTY_PAYLOAD = Buffer.alloc(0);
const NO_LANES: ReadonlySet<Link> = new Set();

/** A link's path as measured; null for what was not measured yet. */
export interface PathEstimate {
  minRttMs: number | null;
  rateBitsPerSecond: number | null;
  /** How long an ack may take before its lateness means something (RFC 6298's RTO, unclamped). */
  ackTimeoutMs: number | null;
}

export interface SendSchedulerOptions {
  config: Pick<EngineConfig, 'ackDelayMs' | 'sharedLinkInFlightBytes' | 'sharedLinkHoldMs'>;
  clock: Clock;
  /** Where the DATA payload bytes written are added up; counts of its own by default. */
  traffic?: TrafficCounts;
}

/**
 * Puts the sessions' packets and acks on the link: control packets first, then one packet per
 * ready session per turn (round robin), so that a bulk session cannot bury another's packets
 * behind its backlog; on a link several sessions share, each is held to the shared-link budget.
 * Acks ride on data packets where they can, wait ackDelayMs for one where they may, and go alone
 * otherwise. Writes are batched to the end of the tick (one system call for a burst) unless asked
 * for now, and stop while the link's socket is over its high-water mark, until it drains.
 */
export class SendScheduler {
  readonly #config: SendSchedulerOptions['config'];
  readonly #clock: Clock;
  /** Sessions with unsent packets, in round-robin order. */
  readonly #ready = new Fifo<Slot>();
  /** Sessions whose ack moved since they last sent one, and must send it at the next flush. */
  readonly #acksDue = new Fifo<Slot>();
  /** Sessions whose ack moved but may wait for a packet to ride on, until #ackTimer fires. */
  readonly #acksDelayed = new Fifo<Slot>();
  #ackTimer: TimerHandle | null = null;
  /** Keystroke sessions whose ack waits for their next packet, until #holdTimer fires. */
  readonly #acksHeld = new Fifo<Slot>();
  #holdTimer: TimerHandle | null = null;
  /** How many sessions have packets in flight on the main lane: lone acks go there only while none has. */
  #mainLaneWaiting = 0;
  /** Unsequenced packets for the current link, written before any session's. */
  #control: ControlPacket[] = [];
  #link: Link | null = null;
  /** The link's second connection, for small sessions (PROTOCOL.md §4.11), once it has joined. */
  #express: Link | null = null;
  /** Sessions' packets go out only once the resume exchange is over. */
  #sessionsRunning = false;
  #flushScheduled = false;
  /** Inside #flush, or handling a received frame: a flush asked for `now` waits for the tick's end. */
  #busy = false;
  /** How much each session may have in flight while several are sending. */
  readonly #sharedLink: SharedLinkBudget;
  /** The link's smoothed round trip and its deviation, for how late an ack may be. */
  readonly #rtt = new RttEstimator();
  readonly #traffic: TrafficCounts;

  constructor(options: SendSchedulerOptions) {
    this.#config = options.config;
    this.#clock = options.clock;
    this.#traffic = options.traffic ?? createTrafficCounts();
    this.#sharedLink = new SharedLinkBudget({ floorBytes: this.#config.sharedLinkInFlightBytes, holdMs: this.#config.sharedLinkHoldMs });
  }

  /** A fresh slot for a new session, in no queue. */
  static slotFor(session: Session): Slot {
    return {
      session,
      ready: false,
      ackDue: false,
      ackDelayed: false,
      ackHeld: false,
      ackHeldUntil: 0,
      sentSinceAckRequest: 0,
      probeSeq: 0,
      probeSentAt: -1,
      waitingSince: -1,
      onExpress: false,
      waitingOnMain: false,
    };
  }

  /**
   * Writes go to `link` from now on, control packets only until sessionsRunning. `roundTripMs`:
   * one already measured on it (the handshake's), the budget's first.
   */
  attach(link: Link, roundTripMs?: number): void {
    this.#link = link;
    this.#express = null;
    this.#sessionsRunning = false;
    this.#control = [];
    this.#sharedLink.newPath();
    this.#rtt.reset();
    if (roundTripMs !== undefined) this.noteRoundTrip(roundTripMs);
  }

  /** A round trip timed on the current link: by the scheduler's own probes, or by its owner (the server's probe at link-up). */
  noteRoundTrip(rttMs: number): void {
    this.#sharedLink.noteRoundTrip(rttMs);
    this.#rtt.noteSample(rttMs);
  }

  /**
   * How long the link has gone without an ack moving any session's bytes while some are in
   * flight (0 when nothing is): the shortest wait of the sessions that are waiting, so that one
   * session whose peer holds its acks back (its consumer is behind) does not make a link whose
   * other acks flow look dead. Taken per lane, the longer of the two counting: one connection of
   * the link may stop while the other's acks flow. A path that stopped delivering shows here within
   * a round trip or two, long before the dead-link timeout. `slots`: the multiplexer's.
   */
  ackWaitMs(slots: Iterable<Slot>): number {
    const now = this.#clock.now();
    let shortestMain = Number.POSITIVE_INFINITY;
    let shortestExpress = Number.POSITIVE_INFINITY;
    for (const slot of slots) {
      if (slot.waitingSince < 0) continue;
      const waited = now - slot.waitingSince;
      if (slot.onExpress) shortestExpress = Math.min(shortestExpress, waited);
      else shortestMain = Math.min(shortestMain, waited);
    }
    return Math.max(Number.isFinite(shortestMain) ? shortestMain : 0, Number.isFinite(shortestExpress) ? shortestExpress : 0);
  }

  /** What the current (or last) link's path was measured to be: its fastest round trip and best recent rate. */
  path(): PathEstimate {
    const rate = this.#sharedLink.deliveryRate(this.#clock.now());
    return { minRttMs: this.#sharedLink.minRttMs, rateBitsPerSecond: rate === null ? null : rate * 8000, ackTimeoutMs: this.#rtt.timeoutMs };
  }

  /**
   * Small sessions' packets may go on `express` from now on, and lone acks do. A session moves to
   * it only once nothing of it is in flight on the main lane.
   */
  attachExpress(express: Link): void {
    this.#express = express;
    this.scheduleFlush();
  }

  /** The link is gone: nothing is queued for it any more, and no slot is in a queue. */
  detach(slots: Iterable<Slot>): void {
    this.#link = null;
    this.#express = null;
    this.#sessionsRunning = false;
    this.#control = [];
    this.#ready.clear();
    this.#acksDue.clear();
    this.#acksDelayed.clear();
    this.#acksHeld.clear();
    for (const slot of slots) {
      slot.ready = slot.ackDue = slot.ackDelayed = slot.ackHeld = false;
      slot.probeSentAt = -1; // its ack, if any, will not time this link
      slot.waitingSince = -1; // nothing is in flight on no link
      slot.onExpress = slot.waitingOnMain = false;
    }
    this.#mainLaneWaiting = 0;
    this.#ackTimer?.cancel();
    this.#ackTimer = null;
    this.#holdTimer?.cancel();
    this.#holdTimer = null;
  }

  /** The resume exchange is over: sessions' packets and acks go out from now on. */
  startSessions(): void {
    this.#sessionsRunning = true;
  }

  /** Queues an unsequenced packet for the current link, ahead of every session's. */
  queueControl(packet: ControlPacket): void {
    this.#control.push(packet);
  }

  /** Runs `handle` with output batched to the end of the tick (a received frame's effects). */
  batched(handle: () => void): void {
    this.#busy = true;
    try {
      handle();
    } finally {
      this.#busy = false;
    }
  }

  /** New packets of the slot's session are queued, to go as soon as `timing` says. */
  outputQueued(slot: Slot, timing: OutputTiming): void {
    this.markReady(slot);
    if (timing === 'now' && !this.#busy) this.flushNow();
    else this.scheduleFlush();
  }

  /** The session's ack moved, to reach the peer as soon as `timing` says. */
  ackNeeded(slot: Slot, timing: AckTiming): void {
    if (timing === 'now') {
      this.markAckDue(slot);
      this.scheduleFlush();
      return;
    }
    if (slot.ackDue || slot.ackDelayed) return;
    // One packet of a session on the express lane (a keystroke's echo) while keystrokes of its
    // own are in flight (typing faster than the round trip, when the lane would carry most packets
    // per round trip): its ack waits for the next keystroke. With nothing of its own in flight, or
    // a second packet, the usual delay (an entry in #acksHeld goes stale): the peer may be waiting
    // for that ack to change lanes (#laneFor), and nothing says another keystroke is coming.
    if (slot.onExpress && this.#express !== null && slot.session.hasInFlight && slot.session.packetsAwaitingAck === 1) {
      if (slot.ackHeld) return;
      const holdMs = this.#ackHoldMs();
      slot.ackHeld = true;
      slot.ackHeldUntil = this.#clock.now() + holdMs;
      this.#acksHeld.push(slot);
      this.#holdTimer ??= this.#clock.setTimeout(this.#releaseHeldAcks, holdMs);
      return;
    }
    slot.ackHeld = false;
    slot.ackDelayed = true;
    this.#acksDelayed.push(slot);
    this.#ackTimer ??= this.#clock.setTimeout(this.#releaseDelayedAcks, this.#config.ackDelayMs);
  }

  /** The delay is over: acks that found no packet to ride on go out on their own. */
  readonly #releaseDelayedAcks = (): void => {
    this.#ackTimer = null;
    for (let slot = this.#acksDelayed.shift(); slot !== undefined; slot = this.#acksDelayed.shift()) {
      if (slot.ackDelayed) this.markAckDue(slot);
    }
    this.scheduleFlush();
  };

  #ackHoldMs(): number {
    const { minRttMs } = this.#sharedLink;
    const smoothedMs = this.#rtt.smoothedMs;
    const roundTripMs = minRttMs === null && smoothedMs === null ? null : Math.max(minRttMs ?? 0, smoothedMs ?? 0);
    return ackHoldMs(this.#config.ackDelayMs, roundTripMs);
  }

  /**
   * Holds that are over: their acks (of sessions that wrote nothing since) go out on their own.
   * Each hold ends at its own time; the timer is set again for the oldest still running (holds
   * are about as long as each other, so the oldest ends first).
   */
  readonly #releaseHeldAcks = (): void => {
    this.#holdTimer = null;
    const now = this.#clock.now();
    for (let slot = this.#acksHeld.peek(); slot !== undefined; slot = this.#acksHeld.peek()) {
      if (slot.ackHeld && slot.ackHeldUntil > now) {
        this.#holdTimer = this.#clock.setTimeout(this.#releaseHeldAcks, slot.ackHeldUntil - now);
        break;
      }
      this.#acksHeld.shift();
      if (slot.ackHeld) this.markAckDue(slot);
    }
    this.scheduleFlush();
  };

  /** The session is finished: its entries in the queues are stale from now on. */
  forget(slot: Slot): void {
    slot.ready = slot.ackDue = slot.ackDelayed = slot.ackHeld = false;
    this.#setWaiting(slot, -1);
  }

  /** Records since when the slot has waited for acks (-1: nothing in flight), keeping #mainLaneWaiting in step. */
  #setWaiting(slot: Slot, since: number): void {
    slot.waitingSince = since;
    const onMain = since >= 0 && !slot.onExpress;
    if (onMain === slot.waitingOnMain) return;
    slot.waitingOnMain = onMain;
    this.#mainLaneWaiting += onMain ? 1 : -1;
  }

  /** The peer's ack frees room in flight: a session held back by the shared-link limit may go on. */
  acknowledged(slot: Slot, ack: number): void {
    const inFlightBefore = slot.session.inFlightBytes;
    const now = this.#clock.now();
    slot.session.acknowledge(ack, { now, minRttMs: this.#sharedLink.minRttMs });
    if (slot.probeSentAt >= 0 && seqBefore(slot.probeSeq, ack)) {
      this.noteRoundTrip(now - slot.probeSentAt);
      slot.probeSentAt = -1;
    }
    // An ack that moved: the wait starts again from now, or ends with nothing left in flight.
    if (slot.session.inFlightBytes !== inFlightBefore || slot.session.inFlightBytes === 0) {
      this.#setWaiting(slot, slot.session.inFlightBytes > 0 ? now : -1);
    }
    if (!slot.onExpress) this.#sharedLink.noteDelivered(inFlightBefore - slot.session.inFlightBytes, now);
    // Unsent packets mean the session is not finished (finishing clears its queue): still ours.
    if (!slot.ready && slot.session.hasUnsent) {
      this.markReady(slot);
      this.scheduleFlush();
    }
  }

  markReady(slot: Slot): void {
    if (slot.ready) return;
    slot.ready = true;
    this.#ready.push(slot);
  }

  /** Its ack goes at the next flush; an entry in #acksDelayed or #acksHeld becomes stale. */
  markAckDue(slot: Slot): void {
    slot.ackDelayed = slot.ackHeld = false;
    if (slot.ackDue) return;
    slot.ackDue = true;
    this.#acksDue.push(slot);
  }

  scheduleFlush(): void {
    if (this.#flushScheduled || this.#link === null) return;
    this.#flushScheduled = true;
    nextTick(this.#flush);
  }

  /** Writes what can be written now (used before closing, when no later tick will come). */
  flushNow(): void {
    this.#flushScheduled = true;
    this.#flush();
  }

  /**
   * The packet's type as written: held to a budget, DATA asks for an ack `perBudget` times per
   * budget's worth, or the session would stall at its budget until the peer's delayed ack. A packet
   * the peer acks at once, written while no other is being timed, times the round trip.
   */
  #typeToWrite(slot: Slot, packet: QueuedPacket, budget: number, now: number, perBudget: number): PacketType {
    let { type } = packet;
    if (type === PacketType.Data && budget !== Number.POSITIVE_INFINITY) {
      slot.sentSinceAckRequest += packet.payload.length;
      if (slot.sentSinceAckRequest >= budget / perBudget) type = PacketType.DataAckRequest;
    }
    if (type === PacketType.Data) return type;
    slot.sentSinceAckRequest = 0;
    if (slot.probeSentAt < 0 && type !== PacketType.Reset) {
      slot.probeSeq = packet.seq;
      slot.probeSentAt = now;
    }
    return type;
  }

  readonly #flush = (): void => {
    this.#flushScheduled = false;
    const link = this.#link;
    if (link === null || link.state !== 'up') return;
    const wasBusy = this.#busy; // flushNow may come from inside a frame's handling
    this.#busy = true;
    const express = this.#express?.state === 'up' ? this.#express : null;
    link.cork();
    express?.cork();
    // Usually empty: not even an iterator or a fresh array then.
    if (this.#control.length > 0) {
      for (const packet of this.#control) link.writePacket(packet.type, packet.sessionId, 0, packet.ack, packet.payload);
      this.#control = [];
    }
    let stoppedBy: ReadonlySet<Link> = NO_LANES;
    if (this.#sessionsRunning) {
      stoppedBy = this.#writeSessions(link, express);
      this.#writeAcks(express !== null && this.#mainLaneWaiting > 0 ? express : link);
    }
    link.uncork();
    express?.uncork();
    this.#busy = wasBusy;
    // The kernel took everything at once: there is room for more now, not at the next 'drain'.
    // Only a lane that held someone back counts: another's room would not let them go.
    for (const lane of stoppedBy) {
      if (lane.writable) {
        this.scheduleFlush();
        break;
      }
    }
  };

  /**
   * The lane for the slot's next packet, or null while it must wait: on the express lane with as
   * much in flight as it may have there, or with a backlog that belongs on the main lane, where it
   * may go only once its packets on the express lane are acknowledged (EXPRESS_BACKLOG_BYTES).
   */
  #laneFor(slot: Slot, main: Link, express: Link | null): Link | null {
    const { session } = slot;
    if (express === null) return main;
    if (!session.hasInFlight) {
      slot.onExpress = session.unsentBytes <= EXPRESS_BACKLOG_BYTES;
      this.#setWaiting(slot, slot.waitingSince); // counted on the lane it is on now
      return slot.onExpress ? express : main;
    }
    if (!slot.onExpress) return main;
    return session.unsentBytes <= EXPRESS_BACKLOG_BYTES && session.inFlightBytes < EXPRESS_IN_FLIGHT_BYTES ? express : null;
  }

  /**
   * Round robin, one packet per session per turn; a lane whose socket holds more than its
   * high-water mark takes no more, and its sessions wait for the next flush. A session with more
   * to send goes to the back of the queue. Returns the lanes that held a session back.
   */
  #writeSessions(main: Link, express: Link | null): ReadonlySet<Link> {
    const now = this.#clock.now();
    const full = new Set<Link>();
    const held: Slot[] = [];
    const anyWritable = (): boolean => main.writable || (express !== null && express.writable);
    while (this.#ready.length > 0 && anyWritable()) {
      const slot = this.#ready.shift() as Slot;
      if (!slot.ready) continue;
      slot.ready = false;
      const { session } = slot;
      const lane = this.#laneFor(slot, main, express);
      if (lane === null) continue; // its acks put it back in the queue (acknowledged())
      if (!lane.writable) {
        full.add(lane);
        held.push(slot);
        continue;
      }
      // The main lane's budget: over it on a shared link, a session is held back until acks free
      // room (acknowledged() puts it back in the queue). Asked per packet: the packet before may
      // have made the link shared. The express lane's sessions are held by #laneFor instead.
      const budget = lane === main ? this.#sharedLink.budgetBytes(now, express !== null) : Number.POSITIVE_INFINITY;
      if (session.inFlightBytes >= budget) continue;
      const packet = session.takeNextPacket();
      if (packet !== null) {
        if (slot.waitingSince < 0) this.#setWaiting(slot, now);
        // Either lane: a keystroke on the express lane still makes the link shared, so that the bulk
        // beside it is held to the shared budget (on loopback the floor: a proxy's event loop is
        // the bottleneck there, and a bulk session's megabytes in the kernel's buffers delay every
        // lane's packets behind their processing).
        this.#sharedLink.noteSent(slot, now);
        const type = this.#typeToWrite(slot, packet, budget, now, express === null ? ACK_REQUESTS_PER_BUDGET : ACK_REQUESTS_PER_BUDGET_EXPRESS);
        lane.writePacket(type, session.id, packet.seq, session.takeAck(), packet.payload);
        if (type === PacketType.Data || type === PacketType.DataAckRequest) this.#traffic.payloadBytesSent += packet.payload.length;
        // The ack rode on this packet: the session's entries in the ack queues are stale.
        slot.ackDue = slot.ackDelayed = slot.ackHeld = false;
      }
      if (session.hasUnsent) this.markReady(slot);
    }
    if (this.#ready.length > 0) {
      // Stopped with sessions still to go: every lane is full.
      full.add(main);
      if (express !== null) full.add(express);
    }
    for (const slot of held) this.markReady(slot);
    return full;
  }

  /**
   * Acks that found no packet to ride on go alone: on the express lane while this side has packets
   * in flight on the main lane (an ack must not wait behind a bulk upload's backlog), on the main
   * lane otherwise, where nothing queues ahead of them. A receiver's acks would otherwise take the
   * express lane a dozen packets per round trip, and BBR's ProbeRTT (4 packets in flight, 200 ms
   * every 10 s) would hold keystrokes behind them.
   */
  #writeAcks(link: Link): void {
    for (let slot = this.#acksDue.shift(); slot !== undefined; slot = this.#acksDue.shift()) {
      if (!slot.ackDue) continue;
      slot.ackDue = false;
      if (slot.session.ackPending) link.writePacket(PacketType.Ack, slot.session.id, 0, slot.session.takeAck(), EMPTY_PAYLOAD);
    }
  }
}
