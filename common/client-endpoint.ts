import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { systemClock, type Clock, type TimerHandle } from './clock.js';
import { resolveClientConfig, type ClientConfig } from './config.js';
import { AuthenticationError, ClosedError, HandshakeError, ProtocolError, type EternalError } from './errors.js';
import { createLink, type Link, type LinkHandler } from './link.js';
import { describeError, silentLogger, type Logger } from './logger.js';
import { Multiplexer, type ResumeSummary } from './multiplexer.js';
import { CLIENT_ID_BYTES, GoAwayCode, LINK_SESSION_ID, PacketType, RESUME_TOKEN_BYTES } from './protocol/constants.js';
import type { Frame } from './protocol/frame-decoder.js';
import { decodeReason, decodeWelcome, encodeHello } from './protocol/messages.js';
import { isTlsSocket, tlsAuthenticationFailure } from './transport.js';
import type { FinishReason, Session } from './session.js';

/** Authentication failures in a row after which the sessions are given up (see #onAuthenticationFailure). */
const AUTHENTICATION_FAILURES_TO_GIVE_UP = 3;

/**
 * Connect attempts in flight at most, whatever connectStaggerMs says: a guard against a very short
 * stagger opening sockets by the hundred. With the defaults (2000 / 500 ms) the cap is 4.
 */
const MAX_ATTEMPTS_IN_FLIGHT = 8;

/**
 * Opens one transport connection to the server. It must emit 'connect' once connected, or
 * 'error'/'close' on failure, like `net.connect` (the default) or `tls.connect`.
 */
export type Dialer = () => Duplex;

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
}

/** A connect attempt that has neither connected nor failed yet. */
interface PendingAttempt {
  readonly socket: Duplex;
  /** Stops following the attempt: its listeners go and its connect timer is cancelled. */
  readonly unwatch: () => void;
}

/**
 *  - connecting:  one or more connect attempts are pending (they overlap, see #armStagger)
 *  - handshaking: connected, HELLO sent, waiting for WELCOME
 *  - up:          the multiplexer runs (or is syncing) on the link
 *  - waiting:     the last pending attempt failed; the next one is on a timer
 *  - closed:      close() was called; nothing more happens
 */
export type ClientState = 'connecting' | 'handshaking' | 'up' | 'waiting' | 'closed';

export interface ClientEndpointEvents {
  /** The link is up and every session resumed. */
  up: [info: { attempts: number; downMs: number | null; summary: ResumeSummary; knownClient: boolean }];
  /** The link went down. */
  down: [error: EternalError];
  /** The server refused our credentials; sessions were closed. */
  'auth-failed': [error: AuthenticationError];
  /**
   * The last pending attempt failed; the next is in `delayMs`. An attempt that fails while others
   * are still pending emits nothing: one of them may yet get through.
   */
  retry: [info: { attempt: number; delayMs: number; error: string }];
  'session-finished': [session: Session, reason: FinishReason, detail: string];
}

/**
 * The client end: dials the server, keeps redialling when the link dies (at once, then with capped
 * exponential backoff and jitter; attempts that hang overlap, one more every connectStaggerMs), and
 * resumes every session on each new link.
 */
export class ClientEndpoint extends EventEmitter<ClientEndpointEvents> implements LinkHandler {
  readonly clientId: Buffer;
  readonly #resumeToken: Buffer;
  readonly #dial: Dialer;
  readonly #serverName: string;
  readonly #config: ClientConfig;
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #mux: Multiplexer;
  #state: ClientState = 'connecting';
  /** The socket of the current link, from the handshake on. */
  #socket: Duplex | null = null;
  #link: Link | null = null;
  /** Connect attempts started and neither connected nor failed; the first to connect wins. */
  readonly #pending = new Set<PendingAttempt>();
  readonly #maxPending: number;
  /** Starts another attempt connectStaggerMs after the last one, while attempts are pending. */
  #staggerTimer: TimerHandle | null = null;
  /** Another attempt is due but the cap held it back: the next pending attempt to fail makes room. */
  #staggerDue = false;
  #handshakeTimer: TimerHandle | null = null;
  #retryTimer: TimerHandle | null = null;
  /** Gives up on the sessions when no link comes back within the resume window. */
  #resumeWindowTimer: TimerHandle | null = null;
  /** Failed attempts since the link was last up. */
  #failures = 0;
  /** Attempts abandoned unfinished since the link was last up (another connected first). */
  #abandoned = 0;
  #downSince: number | null = null;
  #knownClient = false;
  #authenticationFailed = false;
  /** Authentication failures in a row, since the last link that came up. */
  #authenticationFailures = 0;
  #everUp = false;
  /** When a lost link was last redialled at once (not after a backoff delay). */
  #lastImmediateRedialAt = Number.NEGATIVE_INFINITY;

  constructor(options: ClientEndpointOptions) {
    super();
    this.#dial = options.dial;
    this.#serverName = options.serverName;
    this.#config = resolveClientConfig(options.config);
    // Enough attempts for a fresh one every connectStaggerMs while each waits its connect timeout.
    this.#maxPending = Math.min(
      MAX_ATTEMPTS_IN_FLIGHT,
      Math.ceil(this.#config.connectTimeoutMs / this.#config.connectStaggerMs),
    );
    this.#logger = options.logger ?? silentLogger;
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    this.clientId = options.clientId ?? randomBytes(CLIENT_ID_BYTES);
    this.#resumeToken = options.resumeToken ?? randomBytes(RESUME_TOKEN_BYTES);
    this.#mux = new Multiplexer({
      role: 'client',
      config: this.#config,
      logger: this.#logger,
      copyWrites: options.copyWrites ?? true,
      clock: this.#clock,
    });
    this.#mux.on('resumed', (summary) => this.#onResumed(summary));
    this.#mux.on('goaway', (reason) => {
      // The server is closing for good and takes our sessions with it: end them now rather than
      // leave the applications waiting on sessions nobody will resume.
      this.#mux.loseAll(`sproxy closed the link: ${reason}`);
    });
    this.#mux.on('session-finished', (session, reason, detail) => this.emit('session-finished', session, reason, detail));
    this.#connect();
  }

  get state(): ClientState {
    return this.#state;
  }

  get sessionCount(): number {
    return this.#mux.sessionCount;
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
   * Stops for good: tells the server (GOAWAY) so that it releases our sessions, resets the local
   * sessions and stops redialling. Idempotent.
   */
  close(reason = 'client shutting down'): void {
    if (this.#state === 'closed') return;
    this.#setState('closed');
    this.#retryTimer?.cancel();
    this.#abandonPending();
    this.#resumeWindowTimer?.cancel();
    this.#mux.loseAll(reason);
    if (this.#link !== null && this.#mux.link === this.#link) this.#mux.sendGoAway(reason);
    this.#link?.fail(new ClosedError(reason));
    this.#socket?.destroy();
  }

  /** The number of the attempt about to start, counted as in the 'up' event. */
  get #nextAttempt(): number {
    return this.#failures + this.#abandoned + this.#pending.size + 1;
  }

  /** Starts a round of attempts: one now, more while it is pending (see #armStagger). */
  #connect(): void {
    this.#setState('connecting');
    this.#logger.debug({ server: this.#serverName, attempt: this.#nextAttempt }, 'connecting');
    this.#startAttempt();
  }

  #startAttempt(): void {
    this.#staggerDue = false;
    const socket = this.#tryDial();
    if (socket !== null) this.#watchAttempt(socket);
    if (this.#state === 'connecting' && this.#pending.size > 0) this.#armStagger();
  }

  /** The dialer's socket, or null when it threw (a failed attempt, handled as such). */
  #tryDial(): Duplex | null {
    try {
      return this.#dial();
    } catch (error) {
      this.#onAttemptFailed(describeError(error));
      return null;
    }
  }

  /** Follows one attempt until it connects, fails or times out; it is pending meanwhile. */
  #watchAttempt(socket: Duplex): void {
    // A TLS socket is usable once its handshake is done, not when TCP connects.
    const readyEvent = isTlsSocket(socket) ? 'secureConnect' : 'connect';
    const onConnect = (): void => {
      if (!this.#endAttempt(attempt)) return;
      // The first attempt through wins; the others would only bring a second link.
      this.#abandoned += this.#abandonPending();
      this.#startHandshake(socket);
    };
    const onFailure = (error?: Error, timedOut = false): void => {
      if (!this.#endAttempt(attempt)) return;
      socket.destroy();
      const authError = error === undefined ? null : tlsAuthenticationFailure(socket, error);
      if (authError === null) {
        this.#onAttemptFailed(error === undefined ? 'connection closed' : describeError(error), timedOut);
        return;
      }
      // The server answered and refused our key: the attempts still pending dial the same server
      // with the same key, and the failure is handled as it always was.
      this.#abandoned += this.#abandonPending();
      this.#onAuthenticationFailure(authError);
    };
    const onError = (error: Error): void => onFailure(error);
    const onClose = (): void => onFailure();
    // Each attempt gets the whole connect timeout, however many others started after it, so that a
    // path slower than connectStaggerMs still connects.
    const timer = this.#clock.setTimeout(
      () => onFailure(new Error(`connect timed out after ${this.#config.connectTimeoutMs} ms`), true),
      this.#config.connectTimeoutMs,
    );
    const attempt: PendingAttempt = {
      socket,
      unwatch: () => {
        timer.cancel();
        socket.off(readyEvent, onConnect);
        socket.off('error', onError);
        socket.off('close', onClose);
      },
    };
    socket.once(readyEvent, onConnect);
    socket.on('error', onError);
    socket.once('close', onClose);
    this.#pending.add(attempt);
  }

  /** Stops following an attempt that connected or failed; false if it was no longer pending. */
  #endAttempt(attempt: PendingAttempt): boolean {
    if (!this.#pending.delete(attempt)) return false;
    attempt.unwatch();
    return true;
  }

  /**
   * A pending attempt failed. While others are pending it is only counted: one of them may still
   * get through, and a backoff now would delay them for nothing. The last one to fail schedules
   * the next round, with the usual backoff (or at once after a timeout, see #scheduleRetry).
   */
  #onAttemptFailed(reason: string, timedOut = false): void {
    if (this.#pending.size === 0) {
      this.#cancelStagger();
      this.#scheduleRetry(reason, timedOut);
      return;
    }
    this.#countFailure();
    // The same message as a failure that schedules a retry: `pending` in place of `retryInMs`.
    this.#logger.info(
      { server: this.#serverName, attempt: this.#failures, pending: this.#pending.size, reason },
      'connect attempt failed',
    );
    this.#startStaggeredAttempt();
  }

  /**
   * While an attempt is pending, another starts every connectStaggerMs. A pending attempt on a
   * silently dropped path sends SYNs only when the kernel retransmits them, 1 s, 3 s, 7 s … after
   * the first; a new socket sends its SYN at once. So a path that returns is found within about
   * connectStaggerMs instead of about a second.
   */
  #armStagger(): void {
    this.#staggerTimer?.cancel();
    this.#staggerTimer = this.#clock.setTimeout(() => {
      this.#staggerTimer = null;
      this.#staggerDue = true;
      this.#startStaggeredAttempt();
    }, this.#config.connectStaggerMs);
  }

  /** Starts the overlapping attempt that is due, if attempts are pending and fewer than the cap. */
  #startStaggeredAttempt(): void {
    if (!this.#staggerDue || this.#state !== 'connecting' || this.#pending.size === 0) return;
    // At the cap the attempt stays due: the next pending attempt to fail makes room for it.
    if (this.#pending.size >= this.#maxPending) return;
    this.#logger.debug(
      { server: this.#serverName, attempt: this.#nextAttempt, pending: this.#pending.size },
      'connecting (another attempt while others are pending)',
    );
    this.#startAttempt();
  }

  #cancelStagger(): void {
    this.#staggerTimer?.cancel();
    this.#staggerTimer = null;
    this.#staggerDue = false;
  }

  /** Destroys every pending attempt without reporting its end; returns how many there were. */
  #abandonPending(): number {
    this.#cancelStagger();
    const attempts = [...this.#pending];
    for (const attempt of attempts) {
      this.#endAttempt(attempt);
      // Nobody listens any more: an error from the teardown must not become an uncaught one.
      attempt.socket.on('error', () => {});
      attempt.socket.destroy();
    }
    return attempts.length;
  }

  #startHandshake(socket: Duplex): void {
    if (this.#state === 'closed') {
      socket.destroy();
      return;
    }
    this.#setState('handshaking');
    this.#socket = socket;
    const link = createLink(socket, this.#serverName, this.#config, this.#clock);
    this.#link = link;
    link.setHandler(this);
    link.onDown(this.#onLinkDown);
    // A server that accepts but never answers (heartbeats alone keep the link alive) is a failure.
    this.#handshakeTimer = this.#clock.setTimeout(
      () => link.fail(new HandshakeError(`no WELCOME within ${this.#config.deadAfterMs} ms`)),
      this.#config.deadAfterMs,
    );
    link.writePacket(PacketType.Hello, LINK_SESSION_ID, 0, 0, encodeHello(this.clientId, this.#resumeToken));
  }

  // LinkHandler while handshaking; the multiplexer takes over on WELCOME.
  onFrame(link: Link, frame: Frame): void {
    if (frame.header.type !== PacketType.Welcome) {
      if (frame.header.type === PacketType.GoAway) {
        const reason = `sproxy refused the link: ${decodeReason(frame.payload)}`;
        throw frame.header.ack === GoAwayCode.Authentication ? new AuthenticationError(reason) : new HandshakeError(reason);
      }
      throw new ProtocolError(`expected WELCOME, got ${PacketType[frame.header.type] ?? frame.header.type}`);
    }
    const welcome = decodeWelcome(frame.payload);
    this.#knownClient = welcome.knownClient;
    this.#authenticationFailed = false;
    this.#authenticationFailures = 0;
    this.#handshakeTimer?.cancel();
    this.#setState('up');
    this.#mux.attach(link, welcome.knownClient);
  }

  onWritable(): void {}

  readonly #onLinkDown = (link: Link, error: EternalError): void => {
    this.#handshakeTimer?.cancel();
    if (this.#link !== link) return;
    this.#link = null;
    this.#socket = null;
    if (this.#state === 'closed') return;
    const wasUp = this.#state === 'up';
    if (wasUp) {
      this.#downSince = this.#clock.now();
      this.#armResumeWindow();
      this.#logger.warn({ server: this.#serverName, reason: error.message, code: error.code }, 'link down');
      this.emit('down', error);
      // The first attempt after a lost link goes out at once: the path is often fine already. At
      // most one such attempt per maximum backoff delay, so that a server that accepts and then
      // drops us cannot drive a busy loop.
      const now = this.#clock.now();
      if (now - this.#lastImmediateRedialAt >= this.#config.reconnectMaxDelayMs) {
        this.#lastImmediateRedialAt = now;
        this.#failures = 0;
        this.#abandoned = 0;
        this.#connect();
      } else {
        this.#scheduleRetry(error.message);
      }
    } else if (error instanceof AuthenticationError) {
      this.#onAuthenticationFailure(error);
    } else {
      this.#scheduleRetry(error.message);
    }
  };

  /**
   * The server refused who we are. Nothing will change by waiting, so the sessions end now (their
   * applications see a reset, not a hang), new ones are refused until a link comes up, and the
   * redialling goes on slowly in case the configuration is fixed.
   */
  #onAuthenticationFailure(error: AuthenticationError): void {
    // An attacker on the path can inject one failure; a wrong secret fails every time. Only a run
    // of them ends the sessions, which still happens within a fraction of a second.
    this.#authenticationFailures++;
    if (this.#authenticationFailures < AUTHENTICATION_FAILURES_TO_GIVE_UP) {
      this.#logger.warn(
        { server: this.#serverName, reason: error.message, failures: this.#authenticationFailures },
        'authentication with sproxy failed; trying again',
      );
      this.#scheduleRetry(error.message);
      return;
    }
    this.#logger.error({ server: this.#serverName, reason: error.message }, 'authentication with sproxy failed');
    this.#authenticationFailed = true;
    this.emit('auth-failed', error);
    this.#mux.loseAll(error.message);
    this.#failures = Math.max(this.#failures, 30); // straight to the longest backoff step
    this.#scheduleRetry(error.message);
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
    const attempts = this.#failures + this.#abandoned + 1;
    this.#logger.info(
      {
        server: this.#serverName,
        attempts,
        downMs,
        sessions: summary.sessions,
        resentPackets: summary.resentPackets,
        lostSessions: summary.lostSessions,
      },
      this.#everUp ? 'link up: sessions resumed' : 'link up',
    );
    this.#everUp = true;
    this.#failures = 0;
    this.#abandoned = 0;
    this.#downSince = null;
    this.#resumeWindowTimer?.cancel();
    this.#resumeWindowTimer = null;
    this.emit('up', { attempts, downMs, summary, knownClient: this.#knownClient });
  }

  /**
   * `paced`: the last pending attempt timed out, so it already waited; the next goes at once. On a
   * silently dropped path overlapping attempts keep this from happening (see #armStagger), unless
   * connectStaggerMs equals connectTimeoutMs; a backoff on top would only delay finding the path.
   */
  #scheduleRetry(reason: string, paced = false): void {
    if (this.#state === 'closed') return;
    this.#countFailure();
    // Capped exponential backoff with jitter in [50%, 100%] of the step, so that many clients
    // cut off together do not all redial in the same instant.
    const step = Math.min(
      this.#config.reconnectMaxDelayMs,
      this.#config.reconnectBaseDelayMs * 2 ** Math.min(this.#failures - 1, 30),
    );
    const delayMs = paced ? 0 : Math.round(step * (0.5 + this.#random() * 0.5));
    this.#logger.info(
      { server: this.#serverName, attempt: this.#failures, retryInMs: delayMs, reason },
      'connect attempt failed',
    );
    this.emit('retry', { attempt: this.#failures, delayMs, error: reason });
    this.#setState('waiting');
    this.#retryTimer = this.#clock.setTimeout(() => {
      this.#retryTimer = null;
      if (this.#state === 'waiting') this.#connect();
    }, delayMs);
  }

  #countFailure(): void {
    this.#failures++;
    this.#downSince ??= this.#clock.now();
    this.#armResumeWindow();
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

  #setState(state: ClientState): void {
    this.#state = state;
  }
}
