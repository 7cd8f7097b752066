import type { Socket } from 'node:net';
import { PassThrough, type Duplex } from 'node:stream';
import type { Clock, TimerHandle } from '../support/clock.js';
import { AuthenticationError, HandshakeError, ProtocolError, type EternalError } from '../support/errors.js';
import { describeError } from '../support/logger.js';
import { GoAwayCode, LINK_SESSION_ID, PacketType } from '../protocol/constants.js';
import type { Frame } from '../protocol/frame-decoder.js';
import { decodeReason, decodeWelcome, encodeHello, type Welcome } from '../protocol/messages.js';
import { isTlsSocket } from '../transport/dial-link.js';
import { createLink, type Link, type LinkTimings } from '../transport/link.js';
import { ACK_WAIT_MIN_MS } from '../engine/send-scheduler.js';

/**
 * Make before break: a second link dialled while the current one may be dead (the host's
 * addresses changed and a probe went unanswered), carried as far as WELCOME. The client endpoint
 * then moves its sessions onto it and closes the first; until then the first keeps carrying
 * them, so that a false alarm or a second link that cannot be made costs nothing.
 */

/**
 * How long a probe's answer may take: a few of the path's round trips, and room for what the
 * link's own queues hold ahead of it (a busy link's round trip is longer than its fastest), but
 * never so little that scheduling noise fires it, nor so much that a roam waits on it.
 */
const PROBE_ROUND_TRIPS = 4;
const PROBE_QUEUE_ALLOWANCE_MS = 150;
const PROBE_MIN_MS = 200;
const PROBE_MAX_MS = 3000;

/** What the link measured of its path (the multiplexer's PathEstimate, the fields used here). */
export interface MeasuredPath {
  minRttMs: number | null;
  ackTimeoutMs: number | null;
}

/**
 * The probe's deadline: four of the path's fastest round trips and an allowance for what its
 * queues hold, or its ack timeout (RFC 6298's RTO, which a busy link's inflated round trips
 * raise), whichever is longer, within [200 ms, 3 s].
 */
export function probeDeadlineMs(path: MeasuredPath): number {
  const wanted = Math.max(PROBE_ROUND_TRIPS * (path.minRttMs ?? 0) + PROBE_QUEUE_ALLOWANCE_MS, path.ackTimeoutMs ?? 0);
  return Math.round(Math.min(PROBE_MAX_MS, Math.max(PROBE_MIN_MS, wanted)));
}

/**
 * How long bytes may wait in flight for an ack before the link is probed: the ack timeout, never
 * under ACK_WAIT_MIN_MS (an idle LAN's timeout is a millisecond, and a peer may be busy for longer,
 * or hold a keystroke's ack for the next one). A working path, however slow, keeps acks coming,
 * and so never reaches it.
 *
 * `maxMs`: the most it may be (half the dead-link timeout), whatever the timeout says: one round
 * trip timed on a packet whose ack the peer held back (its consumer was behind) can raise it past
 * the dead-link timeout, and the check would then never fire.
 */
export function ackWaitLimitMs(path: MeasuredPath, maxMs: number): number {
  const timeout = path.ackTimeoutMs ?? PROBE_ROUND_TRIPS * (path.minRttMs ?? 0) + PROBE_QUEUE_ALLOWANCE_MS;
  return Math.round(Math.min(Math.max(ACK_WAIT_MIN_MS, maxMs), Math.max(ACK_WAIT_MIN_MS, timeout)));
}

/** A frame expected to be WELCOME: its contents, or the error that ends the link. */
export function readWelcome(frame: Frame): Welcome {
  if (frame.header.type === PacketType.Welcome) return decodeWelcome(frame.payload);
  if (frame.header.type === PacketType.GoAway) {
    const reason = `sproxy refused the link: ${decodeReason(frame.payload)}`;
    throw frame.header.ack === GoAwayCode.Authentication ? new AuthenticationError(reason) : new HandshakeError(reason);
  }
  throw new ProtocolError(`expected WELCOME, got ${PacketType[frame.header.type] ?? frame.header.type}`);
}

/**
 * Opens the handshake on a new link: HELLO with who we are and the proof of it; or, for the
 * express lane of a running link, JOIN with the same (§4.11).
 */
export function sendHello(link: Link, hello: { clientId: Buffer; resumeToken: Buffer }, type: PacketType.Hello | PacketType.Join = PacketType.Hello): void {
  link.writePacket(type, LINK_SESSION_ID, 0, 0, encodeHello(hello.clientId, hello.resumeToken));
}

/** The local address of a link's socket (a TLS socket answers for the TCP socket under it), if it has one. */
export function localAddressOf(socket: Duplex): string | null {
  return (socket as Partial<Socket>).localAddress ?? null;
}

export interface SecondLinkOptions {
  dial: () => Duplex;
  hello: { clientId: Buffer; resumeToken: Buffer };
  /** HELLO for a link that replaces the current one; JOIN for the current one's express lane. */
  helloType?: PacketType.Hello | PacketType.Join;
  serverName: string;
  config: LinkTimings & { connectTimeoutMs: number };
  clock: Clock;
  /** The second link is up to WELCOME: take it (its handler and down listeners are the taker's to set). */
  onWelcome(link: Link, socket: Duplex, welcome: Welcome, roundTripMs: number): void;
  /** It could not be made; the first link is all there is. Called at most once, never after onWelcome. */
  onFailed(reason: string): void;
}

export class SecondLink {
  readonly startedAt: number;
  readonly #options: SecondLinkOptions;
  readonly #socket: Duplex;
  #timer: TimerHandle;
  #done = false;

  /** Dials at once. */
  constructor(options: SecondLinkOptions) {
    this.#options = options;
    this.startedAt = options.clock.now();
    let socket: Duplex;
    try {
      socket = options.dial();
    } catch (error) {
      // A dialer that throws (the Connector handles the same): a failed attempt, reported once
      // the caller holds this object, never an exception out of its timer.
      this.#socket = new PassThrough();
      this.#timer = options.clock.setTimeout(() => this.#fail(describeError(error)), 0);
      return;
    }
    this.#socket = socket;
    // Connecting, then the handshake to WELCOME, each as long as the first link would get.
    this.#timer = options.clock.setTimeout(
      () => this.#fail(`not connected within ${options.config.connectTimeoutMs} ms`),
      options.config.connectTimeoutMs,
    );
    this.#socket.once(isTlsSocket(this.#socket) ? 'secureConnect' : 'connect', this.#onConnected);
    this.#socket.on('error', (error: Error) => this.#fail(describeError(error)));
    this.#socket.once('close', () => this.#fail('connection closed'));
  }

  /** Gives up on it (the endpoint closes, or the first link's trouble ended otherwise). */
  abandon(reason: string): void {
    this.#fail(reason, false);
  }

  readonly #onConnected = (): void => {
    if (this.#done) return;
    const { clock, config, serverName, hello } = this.#options;
    this.#timer.cancel();
    this.#timer = clock.setTimeout(() => this.#fail(`no WELCOME within ${config.deadAfterMs} ms`), config.deadAfterMs);
    const link = createLink(this.#socket, serverName, config, clock);
    link.onDown((_link, error: EternalError) => this.#fail(error.message));
    sendHello(link, hello, this.#options.helloType);
    const helloSentAt = clock.now();
    link.setHandler({ onFrame: (_link, frame) => this.#onFrame(link, frame, helloSentAt), onWritable: () => {} });
  };

  #onFrame(link: Link, frame: Frame, helloSentAt: number): void {
    const welcome = readWelcome(frame); // a throw ends the link, and so this attempt
    this.#done = true;
    this.#timer.cancel();
    this.#options.onWelcome(link, this.#socket, welcome, this.#options.clock.now() - helloSentAt);
  }

  #fail(reason: string, report = true): void {
    if (this.#done) return;
    this.#done = true;
    this.#timer.cancel();
    this.#socket.on('error', () => {});
    this.#socket.destroy();
    if (report) this.#options.onFailed(reason);
  }
}
