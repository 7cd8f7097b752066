import { ConfigError } from '../support/errors.js';
import { DEFAULT_ENGINE_CONFIG, MAX_TIMER_MS, requireInteger, resolveEngineFields, type EngineConfig } from '../engine/config.js';

/** Client side: how the link is dialled again. */
export interface ClientConfig extends EngineConfig {
  /** A connect attempt that has not completed by then is abandoned. */
  connectTimeoutMs: number;
  /**
   * While a connect attempt is pending, another starts this often (each with its own full
   * timeout), so that a path that returns from a silent outage is found within about this long
   * rather than at the kernel's next SYN retransmit (1 s, 3 s, 7 s … after the first). At most
   * ceil(connectTimeoutMs / connectStaggerMs) attempts, and never more than 8, are in flight;
   * equal to connectTimeoutMs, attempts never overlap. Not given, it is at most connectTimeoutMs.
   */
  connectStaggerMs: number;
  /**
   * The host's addresses are looked at this often (0: never): when the link's local address is
   * gone the link is dead at once, and a new address makes a waiting dial go now.
   */
  addressPollMs: number;
  /** First delay between failed attempts, doubled each time (with jitter) up to the maximum. */
  reconnectBaseDelayMs: number;
  reconnectMaxDelayMs: number;
  /**
   * Each link gets a second TCP connection, the express lane, for small sessions (PROTOCOL.md
   * §4.11), so that a keystroke never waits in a bulk session's congestion window.
   */
  expressLane: boolean;
}

/** Server side: limits on what clients can make it hold. */
export interface ServerConfig extends EngineConfig {
  /** Connections that have not yet proved themselves (no HELLO yet) held at once; more are refused. */
  maxPendingLinks: number;
  /** Clients (client ids) held at once, connected or waiting to resume. */
  maxClients: number;
  /** Sessions one client may hold open at once. */
  maxSessionsPerClient: number;
}

export const DEFAULT_CLIENT_CONFIG: Readonly<ClientConfig> = {
  ...DEFAULT_ENGINE_CONFIG,
  connectTimeoutMs: 2000,
  connectStaggerMs: 250,
  addressPollMs: 200,
  reconnectBaseDelayMs: 100,
  reconnectMaxDelayMs: 1000,
  expressLane: true,
};

export const DEFAULT_SERVER_CONFIG: Readonly<ServerConfig> = {
  ...DEFAULT_ENGINE_CONFIG,
  maxPendingLinks: 128,
  maxClients: 1024,
  maxSessionsPerClient: 1024,
};

export function resolveClientConfig(overrides: Partial<ClientConfig> = {}): ClientConfig {
  const config = resolveEngineFields(DEFAULT_CLIENT_CONFIG, overrides);
  requireInteger('connectTimeoutMs', config.connectTimeoutMs, 1, MAX_TIMER_MS);
  // Not given, the stagger follows a connect timeout shorter than its default.
  if (overrides.connectStaggerMs === undefined) {
    config.connectStaggerMs = Math.min(config.connectStaggerMs, config.connectTimeoutMs);
  }
  requireInteger('connectStaggerMs', config.connectStaggerMs, 1, config.connectTimeoutMs);
  requireInteger('addressPollMs', config.addressPollMs, 0, MAX_TIMER_MS);
  requireInteger('reconnectBaseDelayMs', config.reconnectBaseDelayMs, 1, MAX_TIMER_MS);
  requireInteger('reconnectMaxDelayMs', config.reconnectMaxDelayMs, config.reconnectBaseDelayMs, MAX_TIMER_MS);
  if (typeof config.expressLane !== 'boolean') throw new ConfigError(`expressLane must be true or false, got ${String(config.expressLane)}`);
  return config;
}

export function resolveServerConfig(overrides: Partial<ServerConfig> = {}): ServerConfig {
  const config = resolveEngineFields(DEFAULT_SERVER_CONFIG, overrides);
  requireInteger('maxPendingLinks', config.maxPendingLinks, 1, 1_000_000);
  requireInteger('maxClients', config.maxClients, 1, 1_000_000);
  requireInteger('maxSessionsPerClient', config.maxSessionsPerClient, 1, 1_000_000);
  return config;
}
