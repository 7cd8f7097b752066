import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Clock, TimerHandle } from '../support/clock.js';
import { ClosedError } from '../support/errors.js';
import type { Logger } from '../support/logger.js';
import { PacketType } from '../protocol/constants.js';
import type { Link, LinkTimings } from '../transport/link.js';
import { SecondLink } from './second-link.js';

/**
 * The client's side of the express lane (PROTOCOL.md §4.11): once a link is up, a second TCP
 * connection to the same server joins it, and small sessions (keystrokes, a screen's worth of
 * output) go on it, past whatever a bulk session keeps queued in the main connection. On one
 * connection a keystroke shares the bulk's congestion window and its recoveries: a loss, or BBR's
 * PROBE_RTT (four packets in flight for 200 ms every 10 s), holds the keystroke too; on a
 * connection of its own, as a separate ssh would have, it does not.
 *
 * The lane is a help, not a need: if it cannot be made (a server older than JOIN, a firewall that
 * lets one connection through), the link carries everything, as it did before.
 */

/** Tries per link: a JOIN can race the end of the resume exchange at the server, which then refuses it. */
const JOIN_ATTEMPTS = 3;
const JOIN_RETRY_DELAY_MS = 1000;

export interface ExpressLaneOptions {
  dial: () => Duplex;
  hello: { clientId: Buffer; resumeToken: Buffer };
  serverName: string;
  config: LinkTimings & { connectTimeoutMs: number };
  clock: Clock;
  logger: Logger;
}

export class ExpressLane {
  readonly #options: ExpressLaneOptions;
  #attempt: SecondLink | null = null;
  #retryTimer: TimerHandle | null = null;
  /** Bumped by start and stop: an attempt of an earlier link finds it changed and lets go. */
  #generation = 0;

  constructor(options: ExpressLaneOptions) {
    this.#options = options;
  }

  /**
   * A link came up: make its express lane. `attach` adds the lane to that link and says whether
   * it took it (false once the link is gone or has one).
   */
  start(attach: (lane: Link) => boolean): void {
    this.stop();
    this.#dial(++this.#generation, attach, 1);
  }

  /** The link went down or the endpoint closes: no lane for it any more. */
  stop(): void {
    this.#generation++;
    this.#retryTimer?.cancel();
    this.#retryTimer = null;
    this.#attempt?.abandon('its link is gone');
    this.#attempt = null;
  }

  #dial(generation: number, attach: (lane: Link) => boolean, attempt: number): void {
    const { logger, serverName } = this.#options;
    this.#attempt = new SecondLink({
      dial: this.#options.dial,
      hello: this.#options.hello,
      helloType: PacketType.Join,
      serverName,
      config: this.#options.config,
      clock: this.#options.clock,
      onWelcome: (lane, socket, _welcome, roundTripMs) => {
        this.#attempt = null;
        if (generation !== this.#generation || !attach(lane)) {
          lane.fail(new ClosedError('its link is gone'));
          return;
        }
        // Its local port tells the lane from the link's first connection in `ss` (and to the tests).
        const localPort = (socket as Partial<Socket>).localPort;
        logger.debug({ server: serverName, rttMs: Math.round(roundTripMs * 10) / 10, ...(localPort === undefined ? {} : { localPort }) }, 'express lane up');
      },
      onFailed: (reason) => {
        this.#attempt = null;
        if (generation !== this.#generation) return;
        if (attempt >= JOIN_ATTEMPTS) {
          logger.info({ server: serverName, reason, attempts: attempt }, 'no express lane: small sessions share the one connection');
          return;
        }
        this.#retryTimer = this.#options.clock.setTimeout(() => {
          this.#retryTimer = null;
          if (generation === this.#generation) this.#dial(generation, attach, attempt + 1);
        }, JOIN_RETRY_DELAY_MS);
      },
    });
  }
}
