import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { systemClock, type Clock, type TimerHandle } from '../support/clock.js';
import { resolveClientConfig, type ClientConfig } from './config.js';
import { AddressGoneError, AuthenticationError, ClosedError, HandshakeError, LinkClosedError, type EternalError } from '../support/errors.js';
import { createLink, type Link, type LinkHandler } from '../transport/link.js';
import { silentLogger, type Logger } from '../support/logger.js';
import { RepeatCollapsingLogger } from '../support/repeat-collapsing-logger.js';
import { Multiplexer, type ResumeSummary } from '../engine/multiplexer.js';
import type { PathEstimate } from '../engine/send-scheduler.js';
import { createTrafficCounts, type TrafficCounts } from '../engine/traffic-counts.js';
import { CLIENT_ID_BYTES, PacketType, RESUME_TOKEN_BYTES, type ListenStatus } from '../protocol/constants.js';
import { encodeReason, type RemoteOpen } from '../protocol/messages.js';
import type { Frame } from '../protocol/frame-decoder.js';
import { Connector, type Dialer } from './connector.js';
import { AUTHENTICATION_FAILURES_TO_GIVE_UP } from './backoff.js';
import { ExpressLane } from './express-lane.js';
import { PathWatch, type RoamingCounts } from './path-watch.js';
import { localAddressOf, readWelcome, SecondLink, sendHello } from './second-link.js';
import type { FinishReason, Session } from '../engine/session.js';

export type { Dialer } from './connector.js';

/** How long close() waits for its GOAWAY to leave the process, at most: a stuck socket must not hold an exit. */
export const GOAWAY_FLUSH_BOUND_MS = 1000;
export type { RoamingCounts } from './path-watch.js';

export interface ClientEndpointOptions {
  dial: Dialer;
  /** Printable server address, for logs. */
  serverName: string;
  config?: Partial<ClientConfig>;
  logger?: Logger;
  clock?: Clock;
  /** Copy written buffers (needed when callers reuse them); the proxies write fresh socket chunks. */
  copyWrites?: boolean;
  /** Random in [0, 1), for backoff jitter. */
  random?: () => number;
  /** Client identity; random by default. */
  clientId?: Buffer;
  /** Proof that a resume comes from the client that opened the sessions; random by default. */
  resumeToken?: Buffer;
  /**
   * Acknowledge the OPEN of a session the server opened (a remote forward's, §4.12) only on
   * `session.confirmOpen()`: once the application reached its local target.
   */
  confirmOpens?: boolean;
  /** Reads the host's addresses for the address watch (config.addressPollMs); the real interfaces by default. */
  readAddresses?: () => Set<string>;
}

/**
 *  - connecting:  one or more connect attempts are pending (they overlap, see #armStagger)
 *  - handshaking: connected, HELLO sent, waiting for WELCOME
 *  - up:          the multiplexer runs (or is syncing) on the link
 *  - waiting:     the last pending attempt failed; the next one is on a timer
 *  - closed:      close() was called; nothing more happens
 */
export type ClientState = 'connecting' | 'handshaking' | 'up' | 'waiting' | 'closed';

/** The endpoint's own state; while it is `dialing`, the connector says whether it is connecting or waiting. */
type OwnState = 'dialing' | 'handshaking' | 'up' | 'closed';

export interface ClientEndpointEvents {
  /** The link is up and every session resumed. */
  up: [info: { attempts: number; downMs: number | null; summary: ResumeSummary; knownClient: boolean }];
  /** The link went down. */
  down: [error: EternalError];
  /** The server refused our credentials; sessions were closed. */
  'auth-failed': [error: AuthenticationError];
  /**
   * The server refused our credentials on one attempt: at each refusal, `inARow` counting them
   * since the last link up ('auth-failed' follows once AUTHENTICATION_FAILURES_TO_GIVE_UP have).
   */
  'auth-refused': [error: AuthenticationError, inARow: number];
  /**
   * The last pending attempt failed; the next is in `delayMs`. An attempt that fails while others
   * are still pending emits nothing: one of them may yet get through.
   */
  retry: [info: { attempt: number; delayMs: number; error: string }];
  'session-finished': [session: Session, reason: FinishReason, detail: string];
  /** The server opened a session for a connection to one of our remote forwards (listenRemote). */
  'remote-session': [session: Session, open: RemoteOpen];
  /** The server's answer to a remote forward's LISTEN, on each link. */
  'listen-reply': [forward: number, status: ListenStatus, text: string];
  /** A remote forward cannot be asked for: the server does not take LISTEN (an older sproxy). */
  'listen-unsupported': [forward: number, address: string];
}

/**
 * The client end: dials the server, keeps redialling when the link dies (at once, then with capped
 * exponential backoff and jitter; attempts that hang overlap, one more every connectStaggerMs), and
 * resumes every session on each new link.
 */
export class ClientEndpoint extends EventEmitter<ClientEndpointEvents> implements LinkHandler {
  readonly clientId: Buffer;
  readonly #resumeToken: Buffer;
  readonly #connector: Connector;
  readonly #serverName: string;
  readonly #config: ClientConfig;
  readonly #logger: Logger;
  /**
   * Failed attempts and authentication failures: a server that is down, or refuses our secret,
   * fails the same way on every attempt, and its lines collapse into a count here.
   */
  readonly #failureLog: RepeatCollapsingLogger;
  readonly #clock: Clock;
  readonly #mux: Multiplexer;
  readonly #traffic = createTrafficCounts();
  #state: OwnState = 'dialing';
  /** The socket of the current link, from the handshake on. */
  #socket: Duplex | null = null;
  #link: Link | null = null;
  #handshakeTimer: TimerHandle | null = null;
  /** When the current link's HELLO went out: its WELCOME times the first round trip. */
  #helloSentAt = 0;
  /** Gives up on the sessions when no link comes back within the resume window. */
  #resumeWindowTimer: TimerHandle | null = null;
  #downSince: number | null = null;
  #knownClient = false;
  #authenticationFailed = false;
  /** Authentication failures in a row, since the last link that came up. */
  #authenticationFailures = 0;
  #everUp = false;
  /** When a lost link was last redialled at once (not after a backoff delay). */
  #lastImmediateRedialAt = Number.NEGATIVE_INFINITY;
  /** The local address of the current link's socket, once known. */
  #linkLocalAddress: string | null = null;
  /** Watches the host's addresses and the link's acks, and probes the link when they look wrong. */
  readonly #pathWatch: PathWatch;
  /** A second link being made beside the current one (make before break). */
  #secondLink: SecondLink | null = null;
  /** When the second link now being resumed on was dialled (for the log of the switch). */
  #switchStartedAt: number | null = null;
  readonly #dial: Dialer;
  /** The current link's second connection, for small sessions (config.expressLane). */
  readonly #expressLane: ExpressLane | null;
  /** Remote forwards by number (from 1), "bind:port": asked for again on every link. */
  readonly #remoteListens = new Map<number, string>();
  /** The current link's server takes LISTEN (WELCOME's flag). */
  #serverTakesListen = false;

  constructor(options: ClientEndpointOptions) {
    super();
    this.#serverName = options.serverName;
    this.#config = resolveClientConfig(options.config);
    this.#logger = options.logger ?? silentLogger;
    this.#clock = options.clock ?? systemClock;
    // The server is constant; the reason tells one failure from another (refused, timed out, key).
    this.#failureLog = new RepeatCollapsingLogger(this.#logger, { clock: this.#clock, identify: (fields) => [fields['reason']] });
    this.clientId = options.clientId ?? randomBytes(CLIENT_ID_BYTES);
    this.#resumeToken = options.resumeToken ?? randomBytes(RESUME_TOKEN_BYTES);
    this.#mux = new Multiplexer({
      role: 'client',
      config: this.#config,
      logger: this.#logger,
      copyWrites: options.copyWrites ?? true,
      confirmOpens: options.confirmOpens ?? false,
      clock: this.#clock,
      traffic: this.#traffic,
    });
    this.#mux.on('resumed', (summary) => this.#onResumed(summary));
    this.#mux.on('remote-session', (session, open) => {
      // Only for a forward we asked for, and only if someone takes it: else nothing would ever read it.
      if (!this.#remoteListens.has(open.forward) || this.listenerCount('remote-session') === 0) {
        session.on('error', () => {});
        session.destroy(new Error(`no remote forward ${open.forward} here`));
        return;
      }
      this.emit('remote-session', session, open);
    });
    this.#mux.on('listen-reply', (forward, status, text) => this.emit('listen-reply', forward, status, text));
    this.#mux.on('goaway', (reason) => {
      // The server is closing for good and takes our sessions with it: end them now rather than
      // leave the applications waiting on sessions nobody will resume.
      this.#mux.loseAll(`sproxy closed the link: ${reason}`);
    });
    this.#mux.on('session-finished', (session, reason, detail) => this.emit('session-finished', session, reason, detail));
    this.#dial = options.dial;
    this.#expressLane = this.#config.expressLane
      ? new ExpressLane({
          dial: options.dial,
          hello: { clientId: this.clientId, resumeToken: this.#resumeToken },
          serverName: this.#serverName,
          config: this.#config,
          clock: this.#clock,
          logger: this.#logger,
        })
      : null;
    this.#connector = new Connector({
      dial: options.dial,
      config: this.#config,
      clock: this.#clock,
      random: options.random ?? Math.random,
      logger: this.#logger,
      failureLog: this.#failureLog,
      serverName: this.#serverName,
      hooks: {
        onConnected: (socket) => this.#startHandshake(socket),
        onAuthenticationFailure: (error) => this.#onAuthenticationFailure(error),
        onFailureCounted: () => {
          this.#downSince ??= this.#clock.now();
          this.#armResumeWindow();
        },
        onRetry: (info) => this.emit('retry', info),
      },
    });
    this.#pathWatch = new PathWatch({
      clock: this.#clock,
      logger: this.#logger,
      serverName: this.#serverName,
      addressPollMs: this.#config.addressPollMs,
      deadAfterMs: this.#config.deadAfterMs,
      ...(options.readAddresses === undefined ? {} : { readAddresses: options.readAddresses }),
      client: {
        upLink: () => (this.#state === 'up' ? this.#link : null),
        upLanes: () => {
          if (this.#state !== 'up' || this.#link === null) return [];
          const express = this.#mux.expressLane;
          return express === null ? [this.#link] : [this.#link, express];
        },
        linkLocalAddress: () => this.#linkLocalAddress,
        hasLink: () => this.#link !== null,
        isDialing: () => this.#state === 'dialing',
        secondLinkPending: () => this.#secondLink !== null,
        path: () => this.#mux.path,
        ackWaitMs: () => this.#mux.ackWaitMs(),
        onAddressGone: (address) => {
          this.#lastImmediateRedialAt = Number.NEGATIVE_INFINITY; // not a server dropping us: redial at once
          this.#link?.fail(new AddressGoneError(address));
        },
        onAddressAdded: (added) => {
          this.#logger.info({ server: this.#serverName, added }, 'new local address: dialing now');
          this.#connector.dialNow();
        },
        onProbeLate: () => this.#dialSecondLink(),
      },
    });
    this.#connector.connect();
  }

  get state(): ClientState {
    if (this.#state !== 'dialing') return this.#state;
    return this.#connector.phase === 'waiting' ? 'waiting' : 'connecting';
  }

  get sessionCount(): number {
    return this.#mux.sessionCount;
  }

  /** What the sessions carried so far, every link's together (read, not counted, by the metrics). */
  get traffic(): Readonly<TrafficCounts> {
    return this.#traffic;
  }

  /** The current link's path as measured (fastest round trip, best recent rate); null while no link is up. */
  get linkPath(): PathEstimate | null {
    return this.#state === 'up' ? this.#mux.path : null;
  }

  /** What roaming did so far: links ended because their address went, probes, second links, switches. */
  get roamingCounts(): Readonly<RoamingCounts> {
    return this.#pathWatch.counts;
  }

  /** True while the current link has its express lane (config.expressLane). */
  get hasExpressLane(): boolean {
    return this.#mux.expressLane !== null;
  }

  /** Payload bytes the sessions hold in their send queues (bounded by sendBudgetBytes). */
  get queuedSendBytes(): number {
    return this.#mux.queuedSendBytes;
  }

  /**
   * Authentication kept failing (AUTHENTICATION_FAILURES_TO_GIVE_UP in a row) and the sessions were
   * given up; cleared when a link comes up.
   */
  get authenticationFailed(): boolean {
    return this.#authenticationFailed;
  }

  /** A new session. It works at once: its bytes queue until the link is up. */
  openSession(target?: string): Session {
    if (this.#state === 'closed') throw new ClosedError('client endpoint is closed');
    return this.#mux.openSession(target);
  }

  /**
   * A remote forward: asks the server, on this link and every later one, to listen on
   * `address` ("bind:port") and open a session to us for each connection it accepts
   * ('remote-session', with the number returned). Its answers come as 'listen-reply'.
   */
  listenRemote(address: string): number {
    const forward = this.#remoteListens.size + 1;
    this.#remoteListens.set(forward, address);
    if (this.#mux.phase === 'running') this.#sendListen(forward, address);
    return forward;
  }

  #sendListen(forward: number, address: string): void {
    if (this.#serverTakesListen) this.#mux.sendLinkMessage(PacketType.Listen, forward, 0, encodeReason(address));
    else this.emit('listen-unsupported', forward, address);
  }

  /**
   * Stops for good: tells the server (GOAWAY) so that it releases our sessions, resets the local
   * sessions and stops redialling. Idempotent. Resolves once the GOAWAY is out of the process (or
   * GOAWAY_FLUSH_BOUND_MS passed): a program that exits right after close() would drop it
   * otherwise, and the server would hold the sessions for the resume window (a bootstrap sproxy
   * would stay up that long).
   */
  close(reason = 'client shutting down'): Promise<void> {
    if (this.#state === 'closed') return Promise.resolve();
    this.#setState('closed');
    this.#pathWatch.stop();
    this.#expressLane?.stop();
    this.#secondLink?.abandon(reason);
    this.#connector.stop();
    this.#failureLog.flush(); // the counts still open, before the last line
    this.#resumeWindowTimer?.cancel();
    this.#mux.loseAll(reason);
    if (this.#link !== null && this.#mux.link === this.#link) {
      this.#mux.sendGoAway(reason);
      return this.#link.finish(new ClosedError(reason), GOAWAY_FLUSH_BOUND_MS);
    }
    this.#link?.fail(new ClosedError(reason));
    this.#socket?.destroy();
    return Promise.resolve();
  }

  #startHandshake(socket: Duplex): void {
    if (this.#state === 'closed') {
      socket.destroy();
      return;
    }
    this.#setState('handshaking');
    this.#socket = socket;
    this.#linkLocalAddress = localAddressOf(socket); // a test's in-memory pair has none
    const link = createLink(socket, this.#serverName, this.#config, this.#clock);
    this.#link = link;
    link.setHandler(this);
    link.onDown(this.#onLinkDown);
    // A server that accepts but never answers (heartbeats alone keep the link alive) is a failure.
    this.#handshakeTimer = this.#clock.setTimeout(
      () => link.fail(new HandshakeError(`no WELCOME within ${this.#config.deadAfterMs} ms`)),
      this.#config.deadAfterMs,
    );
    sendHello(link, { clientId: this.clientId, resumeToken: this.#resumeToken });
    this.#helloSentAt = this.#clock.now();
  }

  // LinkHandler while handshaking; the multiplexer takes over on WELCOME.
  onFrame(link: Link, frame: Frame): void {
    const welcome = readWelcome(frame);
    this.#knownClient = welcome.knownClient;
    this.#serverTakesListen = welcome.remoteForwards;
    this.#authenticationFailed = false;
    this.#authenticationFailures = 0;
    this.#handshakeTimer?.cancel();
    this.#setState('up');
    // HELLO to WELCOME: the new path's first round trip (sproxy answers at once).
    this.#mux.attach(link, welcome.knownClient, this.#clock.now() - this.#helloSentAt);
  }

  onWritable(): void {}

  readonly #onLinkDown = (link: Link, error: EternalError): void => {
    this.#handshakeTimer?.cancel();
    if (this.#link !== link) return;
    this.#link = null;
    this.#socket = null;
    this.#expressLane?.stop();
    if (this.#state === 'closed') return;
    const wasUp = this.#state === 'up';
    if (wasUp) {
      this.#downSince = this.#clock.now();
      this.#armResumeWindow();
      this.#logger.warn({ server: this.#serverName, reason: error.message, code: error.code, ...this.#pathFields() }, 'link down');
      this.emit('down', error);
      this.#pathWatch.linkDown();
      if (this.#secondLink !== null) {
        // Closed by the peer: most likely sproxy took the second link's HELLO and let it supersede
        // this one, and its WELCOME is on its way. Anything else (silence, our address gone): the
        // second link is one attempt on a path that may not work either; the connector's
        // overlapping attempts are the better bet.
        if (error instanceof LinkClosedError) {
          this.#setState('dialing');
          return;
        }
        this.#secondLink.abandon('the first link went down first');
        this.#secondLink = null;
      }
      // The first attempt after a lost link goes out at once: the path is often fine already. At
      // most one such attempt per maximum backoff delay, so that a server that accepts and then
      // drops us cannot drive a busy loop.
      const now = this.#clock.now();
      if (now - this.#lastImmediateRedialAt >= this.#config.reconnectMaxDelayMs) {
        this.#lastImmediateRedialAt = now;
        this.#connector.resetCounts();
        this.#redial();
      } else {
        this.#retryAfterFailure(error.message);
      }
    } else if (error instanceof AuthenticationError) {
      this.#onAuthenticationFailure(error);
    } else {
      this.#retryAfterFailure(error.message);
    }
  };

  #dialSecondLink(): void {
    const second = new SecondLink({
      dial: this.#dial,
      hello: { clientId: this.clientId, resumeToken: this.#resumeToken },
      serverName: this.#serverName,
      config: this.#config,
      clock: this.#clock,
      onWelcome: (link, socket, welcome, roundTripMs) => {
        this.#secondLink = null;
        this.#serverTakesListen = welcome.remoteForwards;
        this.#switchTo(link, socket, welcome.knownClient, roundTripMs, second.startedAt);
      },
      onFailed: (reason) => {
        this.#secondLink = null;
        this.#logger.info({ server: this.#serverName, reason }, 'second link could not be made; the first is all there is');
        // The first died meanwhile, waiting on this one: dial as after any lost link.
        if (this.#link === null && this.#state === 'dialing') this.#redial();
      },
    });
    this.#secondLink = second;
  }

  /**
   * Moves the sessions onto a second link that reached WELCOME and closes the first: sproxy has
   * already switched to it (the new link's HELLO supersedes the old, §5.4), and the resume exchange
   * on it settles what either side had sent on the first.
   */
  #switchTo(link: Link, socket: Duplex, knownClient: boolean, roundTripMs: number, dialledAt: number): void {
    const first = this.#link;
    this.#link = link;
    this.#socket = socket;
    this.#linkLocalAddress = localAddressOf(socket);
    this.#knownClient = knownClient;
    this.#switchStartedAt = dialledAt;
    this.#pathWatch.counts.switches++;
    this.#expressLane?.stop();
    link.onDown(this.#onLinkDown);
    this.#setState('up');
    this.#mux.attach(link, knownClient, roundTripMs);
    first?.fail(new LinkClosedError('replaced by a second link'));
  }

  /** Dials again at once. */
  #redial(): void {
    this.#setState('dialing');
    this.#connector.connect();
  }

  /** Dials again after the connector's backoff. */
  #retryAfterFailure(reason: string): void {
    // The 'retry' event still sees the state the failure happened in, as it always did.
    this.#connector.retryAfterFailure(reason);
    this.#setState('dialing');
  }

  /**
   * The server refused who we are. Nothing will change by waiting, so the sessions end now (their
   * applications see a reset, not a hang), new ones are refused until a link comes up, and the
   * redialling goes on, ever slower (up to AUTHENTICATION_MAX_DELAY_MS), in case the configuration
   * is fixed. One line per failure, whose repeats #failureLog collapses.
   */
  #onAuthenticationFailure(error: AuthenticationError): void {
    // An attacker on the path can inject one failure; a wrong secret fails every time. Only a run
    // of them ends the sessions, which still happens within a fraction of a second.
    const failures = ++this.#authenticationFailures;
    this.emit('auth-refused', error, failures);
    // The 'retry' event still sees the state the failure happened in, as it always did.
    const retryInMs = this.#connector.retryAfterAuthenticationFailure(error.message, failures);
    this.#setState('dialing');
    const fields = { server: this.#serverName, reason: error.message, failures, ...(retryInMs === null ? {} : { retryInMs }) };
    if (failures < AUTHENTICATION_FAILURES_TO_GIVE_UP) {
      this.#failureLog.warn(fields, 'authentication with sproxy failed; trying again');
      return;
    }
    // Logged before the sessions it ends, which log their own lines.
    this.#failureLog.error(fields, 'authentication with sproxy failed');
    this.#authenticationFailed = true;
    this.emit('auth-failed', error);
    this.#mux.loseAll(error.message);
  }

  #onResumed(summary: ResumeSummary): void {
    if (!this.#knownClient && summary.lostSessions > 0) {
      this.#logger.warn(
        { server: this.#serverName, lostSessions: summary.lostSessions },
        'server does not know this client (it restarted or the resume window expired): its sessions are lost',
      );
    }
    const downMs = this.#downSince === null ? null : Math.round(this.#clock.now() - this.#downSince);
    // Every attempt since the link was last up: failed, abandoned, and this one.
    const attempts = this.#connector.attemptsSinceUp;
    // A switch to a second link: how long since it was dialled, the first still carrying sessions meanwhile.
    const switchMs = this.#switchStartedAt === null ? undefined : Math.round(this.#clock.now() - this.#switchStartedAt);
    this.#switchStartedAt = null;
    this.#logger.info(
      {
        server: this.#serverName,
        // As sproxy's lines name it (the first 8 hex digits): one client's lines on both sides.
        client: this.clientId.toString('hex').slice(0, 8),
        attempts,
        downMs,
        ...(switchMs === undefined ? {} : { switchMs }),
        sessions: summary.sessions,
        resentPackets: summary.resentPackets,
        lostSessions: summary.lostSessions,
        ...this.#pathFields(),
      },
      switchMs !== undefined
        ? `link up: switched to the second link in ${switchMs} ms, ${summary.sessions} sessions resumed`
        : this.#everUp
          ? 'link up: sessions resumed'
          : 'link up',
    );
    this.#everUp = true;
    const link = this.#link;
    if (link !== null) this.#expressLane?.start((lane) => this.#mux.link === link && this.#mux.attachExpress(lane));
    this.#connector.resetCounts();
    this.#downSince = null;
    this.#resumeWindowTimer?.cancel();
    this.#resumeWindowTimer = null;
    this.emit('up', { attempts, downMs, summary, knownClient: this.#knownClient });
    for (const [forward, address] of this.#remoteListens) this.#sendListen(forward, address);
  }

  /**
   * The path as measured, for the log: at link-up the handshake's round trip; at link-down the
   * fastest round trip and the best recent delivery rate the link saw (what its budget used).
   */
  #pathFields(): { rttMs?: number; rateMbit?: number } {
    const { minRttMs, rateBitsPerSecond } = this.#mux.path;
    return {
      ...(minRttMs === null ? {} : { rttMs: Math.round(minRttMs * 10) / 10 }),
      ...(rateBitsPerSecond === null ? {} : { rateMbit: Math.round(rateBitsPerSecond / 1e5) / 10 }),
    };
  }

  /** Starts counting the resume window from the first moment without a link (idempotent). */
  #armResumeWindow(): void {
    this.#resumeWindowTimer ??= this.#clock.setTimeout(() => {
      this.#resumeWindowTimer = null;
      if (this.#state === 'up' || this.#mux.sessionCount === 0) return;
      this.#logger.warn(
        { server: this.#serverName, resumeWindowMs: this.#config.resumeWindowMs },
        'no link within the resume window: giving up on the sessions',
      );
      this.#mux.loseAll('the server could not be reached within the resume window');
    }, this.#config.resumeWindowMs);
  }

  #setState(state: OwnState): void {
    this.#state = state;
  }
}
