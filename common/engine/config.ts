import { ConfigError } from '../support/errors.js';
import { MAX_PAYLOAD_BYTES } from '../protocol/constants.js';

/** Timing and sizing of the engine. Every field names its unit. */
export interface EngineConfig {
  /** A HEARTBEAT goes out on the link this often, each way. */
  heartbeatIntervalMs: number;
  /** The link is dead when nothing has arrived for this long. */
  deadAfterMs: number;
  /** Most unacknowledged payload bytes per session in flight (flow-control window), at first. */
  windowBytes: number;
  /**
   * What a session's window may grow to, on a path whose bandwidth-delay product calls for more
   * (window-growth.ts). Equal to windowBytes: windows never grow.
   */
  maxWindowBytes: number;
  /**
   * The proxy's memory for send queues, all sessions of all links together: bytes read from local
   * sockets and not yet acknowledged (send-budget.ts). Past it, each session keeps a small
   * guaranteed share, so nobody stalls for others.
   */
  sendBudgetBytes: number;
  /**
   * An ack for plain DATA waits this long for a packet of its session to ride on before it goes
   * out alone. DATA_ACK_REQUEST, FIN and a consumer catching up are acknowledged at once.
   */
  ackDelayMs: number;
  /**
   * While two or more sessions are sending (within `sharedLinkHoldMs` of each other), a session
   * stops writing to the link once this many of its bytes are in flight (written, not yet
   * acknowledged), so that a bulk session cannot fill the link's kernel buffers ahead of another
   * session's keystrokes; its backlog waits in its own queue, bounded by its window. This is the
   * floor of a budget that grows with the link's round trip (see shared-link.ts), so it only bites
   * on very fast paths such as loopback. A lone session uses its whole window. 0: no limit.
   */
  sharedLinkInFlightBytes: number;
  /** How long the link counts as shared after two sessions last sent within this time of each other. */
  sharedLinkHoldMs: number;
  /** Largest DATA payload sent. Smaller frames interleave sessions more finely on the link. */
  maxFramePayloadBytes: number;
  /** The link writer stops taking packets from sessions while the socket buffers this much. */
  linkWriteHighWaterBytes: number;
  /** Per session: received bytes buffered before acks wait for the consumer. */
  sessionReadableHighWaterBytes: number;
  /** Per session: written bytes Node buffers before write() returns false. */
  sessionWritableHighWaterBytes: number;
  /**
   * How long sessions wait for a link to come back. The server then drops the client's sessions;
   * the client gives up on its sessions after the same time without reaching the server.
   */
  resumeWindowMs: number;
}

export const DEFAULT_ENGINE_CONFIG: Readonly<EngineConfig> = {
  heartbeatIntervalMs: 1000,
  deadAfterMs: 3000,
  // Measured with `npm run bench`: 64 KiB frames against 16 KiB cut the tunnel's write calls per GB
  // from about 98k to 46k and lifted throughput from ~0.6x to ~0.65x the plain relay, with no
  // change to a keystroke's latency beside a bulk session. A 4 MiB window gained nothing more and
  // let ~4 MB queue in the link's kernel buffers ahead of that keystroke (p99 +3 to +6 ms).
  // Smaller windows trade the other way (`--window`): 1 MiB gave a keystroke beside unbounded bulk
  // a p99 of ~8 ms instead of ~12 with bulk about 3% slower; 512 KiB ~6 ms, bulk 0.65-0.77x.
  windowBytes: 2 * 1024 * 1024,
  // Twice the product of 150 Mbit/s and a 200 ms round trip is 7.5 MB; 16 MiB fills a 300 ms path
  // at about 220 Mbit/s (`npm run bench`, WAN section, measures the 200 ms case).
  maxWindowBytes: 16 * 1024 * 1024,
  // Eight fully grown windows, or 64 sessions each holding its initial window.
  sendBudgetBytes: 128 * 1024 * 1024,
  ackDelayMs: 10,
  maxFramePayloadBytes: 64 * 1024,
  sharedLinkInFlightBytes: 128 * 1024,
  sharedLinkHoldMs: 250,
  linkWriteHighWaterBytes: 128 * 1024,
  sessionReadableHighWaterBytes: 64 * 1024,
  sessionWritableHighWaterBytes: 64 * 1024,
  resumeWindowMs: 24 * 60 * 60 * 1000,
};

/** Throws a ConfigError unless `value` is an integer in [min, max]. */
export function requireInteger(name: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name} must be an integer from ${min} to ${max}, got ${value}`);
  }
}

export const MAX_TIMER_MS = 2 ** 31 - 1; // Node timers overflow past this and fire at once.

export function validateEngineConfig(config: EngineConfig): void {
  requireInteger('heartbeatIntervalMs', config.heartbeatIntervalMs, 10, MAX_TIMER_MS);
  requireInteger('deadAfterMs', config.deadAfterMs, 20, MAX_TIMER_MS);
  if (config.deadAfterMs <= config.heartbeatIntervalMs) {
    throw new ConfigError(
      `deadAfterMs (${config.deadAfterMs}) must be longer than heartbeatIntervalMs (${config.heartbeatIntervalMs})`,
    );
  }
  requireInteger('maxFramePayloadBytes', config.maxFramePayloadBytes, 1, MAX_PAYLOAD_BYTES);
  requireInteger('windowBytes', config.windowBytes, config.maxFramePayloadBytes, 2 ** 30);
  requireInteger('maxWindowBytes', config.maxWindowBytes, config.windowBytes, 2 ** 30);
  requireInteger('sendBudgetBytes', config.sendBudgetBytes, 1, 2 ** 40);
  // Far below the dead-link timeout, and an ack delayed by more than a heartbeat helps nobody.
  requireInteger('ackDelayMs', config.ackDelayMs, 0, config.heartbeatIntervalMs);
  requireInteger('sharedLinkInFlightBytes', config.sharedLinkInFlightBytes, 0, 2 ** 30);
  requireInteger('sharedLinkHoldMs', config.sharedLinkHoldMs, 0, MAX_TIMER_MS);
  requireInteger('linkWriteHighWaterBytes', config.linkWriteHighWaterBytes, 1, 2 ** 30);
  requireInteger('sessionReadableHighWaterBytes', config.sessionReadableHighWaterBytes, 1, 2 ** 30);
  requireInteger('sessionWritableHighWaterBytes', config.sessionWritableHighWaterBytes, 1, 2 ** 30);
  requireInteger('resumeWindowMs', config.resumeWindowMs, 1, MAX_TIMER_MS);
}

/**
 * The defaults under `overrides`, validated. A window set above the default growth cap, with no
 * cap given, is the cap too: asking for a large window must not be an error.
 */
export function resolveEngineFields<T extends EngineConfig>(defaults: Readonly<T>, overrides: Partial<T>): T {
  const config = { ...defaults, ...definedOnly(overrides) };
  if (overrides.maxWindowBytes === undefined) config.maxWindowBytes = Math.max(config.maxWindowBytes, config.windowBytes);
  validateEngineConfig(config);
  return config;
}

/** Drops keys whose value is undefined, so that they do not hide the defaults. */
export function definedOnly<T extends object>(values: Partial<T>): Partial<T> {
  return Object.fromEntries(Object.entries(values).filter(([, value]) => value !== undefined)) as Partial<T>;
}
