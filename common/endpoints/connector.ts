import type { Duplex } from 'node:stream';
import type { Clock, TimerHandle } from '../support/clock.js';
import type { AuthenticationError } from '../support/errors.js';
import { describeError, type Logger } from '../support/logger.js';
import { isTlsSocket, tlsAuthenticationFailure } from '../transport/dial-link.js';
import { authenticationRetryStepMs, jitteredDelayMs, networkRetryStepMs } from './backoff.js';
import type { ClientConfig } from './config.js';

/**
 * Connect attempts in flight at most, whatever connectStaggerMs says: a guard against a very short
 * stagger opening sockets by the hundred. With the defaults (2000 / 250 ms) the cap is 8.
 */
const MAX_ATTEMPTS_IN_FLIGHT = 8;

/**
 * Opens one transport connection to the server. It must emit 'connect' once connected, or
 * 'error'/'close' on failure, like `net.connect` (the default) or `tls.connect`.
 */
export type Dialer = () => Duplex;

/**
 *  - idle:       not dialling (a link is being set up or is up, or the connector is stopped)
 *  - connecting: one or more connect attempts are pending (they overlap, see #armStagger)
 *  - waiting:    the last pending attempt failed; the next one is on a timer
 */
export type ConnectorPhase = 'idle' | 'connecting' | 'waiting';

/** What the connector tells the client endpoint. */
export interface ConnectorHooks {
  /** An attempt got through (TCP connected, or its TLS handshake done); the others were abandoned. */
  onConnected(socket: Duplex): void;
  /** An attempt's TLS handshake failed once our key was in use; the others were abandoned. */
  onAuthenticationFailure(error: AuthenticationError): void;
  /** A failed attempt was counted (the link is down from now on, if it was not already). */
  onFailureCounted(): void;
  /** The last pending attempt failed; the next round starts in `delayMs`. */
  onRetry(info: { attempt: number; delayMs: number; error: string }): void;
}

export interface ConnectorOptions {
  dial: Dialer;
  config: Pick<ClientConfig, 'connectTimeoutMs' | 'connectStaggerMs' | 'reconnectBaseDelayMs' | 'reconnectMaxDelayMs'>;
  clock: Clock;
  /** Random in [0, 1), for backoff jitter. */
  random: () => number;
  logger: Logger;
  /** Where failed attempts are logged: a log that collapses repeats (the same failure every second). */
  failureLog: Logger;
  /** Printable server address, for logs. */
  serverName: string;
  hooks: ConnectorHooks;
}

/** A connect attempt that has neither connected nor failed yet. */
interface PendingAttempt {
  readonly socket: Duplex;
  /** Stops following the attempt: its listeners go and its connect timer is cancelled. */
  readonly unwatch: () => void;
}

/**
 * Dials the server until an attempt gets through: attempts that hang overlap (one more every
 * connectStaggerMs, each with its own full connect timeout), and a round whose last attempt failed
 * is followed by the next after a capped exponential backoff with jitter. It counts what it did
 * since the link was last up, for the logs and the 'up' event.
 */
export class Connector {
  readonly #dial: Dialer;
  readonly #config: ConnectorOptions['config'];
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #logger: Logger;
  readonly #failureLog: Logger;
  readonly #serverName: string;
  readonly #hooks: ConnectorHooks;
  readonly #maxPending: number;
  #phase: ConnectorPhase = 'idle';
  #stopped = false;
  /** Connect attempts started and neither connected nor failed; the first to connect wins. */
  readonly #pending = new Set<PendingAttempt>();
  /** Starts another attempt connectStaggerMs after the last one, while attempts are pending. */
  #staggerTimer: TimerHandle | null = null;
  /** Another attempt is due but the cap held it back: the next pending attempt to fail makes room. */
  #staggerDue = false;
  #retryTimer: TimerHandle | null = null;
  /** Failed attempts since the link was last up. */
  #failures = 0;
  /** Attempts abandoned unfinished since the link was last up (another connected first). */
  #abandoned = 0;

  constructor(options: ConnectorOptions) {
    this.#dial = options.dial;
    this.#config = options.config;
    this.#clock = options.clock;
    this.#random = options.random;
    this.#logger = options.logger;
    this.#failureLog = options.failureLog;
    this.#serverName = options.serverName;
    this.#hooks = options.hooks;
    // Enough attempts for a fresh one every connectStaggerMs while each waits its connect timeout.
    this.#maxPending = Math.min(MAX_ATTEMPTS_IN_FLIGHT, Math.ceil(this.#config.connectTimeoutMs / this.#config.connectStaggerMs));
  }

  get phase(): ConnectorPhase {
    return this.#phase;
  }

  /** Attempts since the link was last up, counting the one that connected: failed, abandoned, and it. */
  get attemptsSinceUp(): number {
    return this.#failures + this.#abandoned + 1;
  }

  /** The link is up: the counts start again. */
  resetCounts(): void {
    this.#failures = 0;
    this.#abandoned = 0;
  }

  /** Starts a round of attempts: one now, more while it is pending (see #armStagger). */
  connect(): void {
    this.#phase = 'connecting';
    this.#logger.debug({ server: this.#serverName, attempt: this.#nextAttempt }, 'connecting');
    this.#startAttempt();
  }

  /**
   * Something changed that may let an attempt through now (a new local address): a round that
   * waits on its backoff starts at once, and one whose attempts hang gets a fresh one now (those
   * pending went out from the old address, or into a route that had none), within the cap.
   */
  dialNow(): void {
    if (this.#stopped) return;
    if (this.#phase === 'waiting') {
      this.#retryTimer?.cancel();
      this.#retryTimer = null;
      this.connect();
    } else if (this.#phase === 'connecting') {
      this.#staggerDue = true;
      this.#startStaggeredAttempt();
    }
  }

  /** Stops for good: no more attempts, and every pending one is destroyed. Idempotent. */
  stop(): void {
    this.#stopped = true;
    this.#phase = 'idle';
    this.#retryTimer?.cancel();
    this.#abandonPending();
  }

  /** The number of the attempt about to start, counted as in the 'up' event. */
  get #nextAttempt(): number {
    return this.#failures + this.#abandoned + this.#pending.size + 1;
  }

  #startAttempt(): void {
    this.#staggerDue = false;
    const socket = this.#tryDial();
    if (socket !== null) this.#watchAttempt(socket);
    if (this.#phase === 'connecting' && this.#pending.size > 0) this.#armStagger();
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
      this.#phase = 'idle';
      this.#hooks.onConnected(socket);
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
      this.#hooks.onAuthenticationFailure(authError);
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
   * the next round, with the usual backoff (or at once after a timeout, see retryAfterFailure).
   */
  #onAttemptFailed(reason: string, timedOut = false): void {
    if (this.#pending.size === 0) {
      this.#cancelStagger();
      this.retryAfterFailure(reason, timedOut);
      return;
    }
    this.#countFailure();
    // The same message as a failure that schedules a retry: `pending` in place of `retryInMs`.
    this.#failureLog.info(
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
    if (!this.#staggerDue || this.#phase !== 'connecting' || this.#pending.size === 0) return;
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

  /**
   * Counts a failure and starts the next round after a backoff. `paced`: the last pending attempt
   * timed out, so it already waited; the next goes at once. On a silently dropped path overlapping
   * attempts keep this from happening (see #armStagger), unless connectStaggerMs equals
   * connectTimeoutMs; a backoff on top would only delay finding the path.
   */
  retryAfterFailure(reason: string, paced = false): void {
    if (this.#stopped) return;
    this.#countFailure();
    const delayMs = paced ? 0 : jitteredDelayMs(networkRetryStepMs(this.#failures, this.#config), this.#random());
    this.#failureLog.info(
      { server: this.#serverName, attempt: this.#failures, retryInMs: delayMs, reason },
      'connect attempt failed',
    );
    this.#scheduleRetry(delayMs, reason);
  }

  /**
   * Counts an attempt the server refused for our credentials (the `failures`-th in a row) and
   * starts the next round after the slower authentication backoff (authenticationRetryStepMs).
   * Returns the delay, or null once stopped. It logs nothing: the caller's line says more.
   */
  retryAfterAuthenticationFailure(reason: string, failures: number): number | null {
    if (this.#stopped) return null;
    this.#countFailure();
    const delayMs = jitteredDelayMs(authenticationRetryStepMs(failures, this.#config), this.#random());
    this.#scheduleRetry(delayMs, reason);
    return delayMs;
  }

  #scheduleRetry(delayMs: number, reason: string): void {
    this.#hooks.onRetry({ attempt: this.#failures, delayMs, error: reason });
    this.#phase = 'waiting';
    this.#retryTimer = this.#clock.setTimeout(() => {
      this.#retryTimer = null;
      if (this.#phase === 'waiting') this.connect();
    }, delayMs);
  }

  #countFailure(): void {
    this.#failures++;
    this.#hooks.onFailureCounted();
  }
}
