/**
 * eternal-tcp as a library: streams that survive the loss of their TCP connection, and the
 * engine under cproxy and sproxy.
 */
export { connect, createServer, EternalServer, type ConnectOptions, type EternalServerOptions } from './endpoints/api.js';
export { ClientEndpoint, type ClientEndpointOptions, type ClientState, type Dialer, type RoamingCounts } from './endpoints/client-endpoint.js';
export { ServerEndpoint, type ServerEndpointOptions, type SessionContext } from './endpoints/server-endpoint.js';
export { Session, type SessionState, type FinishReason } from './engine/session.js';
export { bridgeSocket } from './forwarding/bridge.js';
export type { EngineConfig } from './engine/config.js';
export { DEFAULT_CLIENT_CONFIG, DEFAULT_SERVER_CONFIG, type ClientConfig, type ServerConfig } from './endpoints/config.js';
export type { Clock, TimerHandle } from './support/clock.js';
export type { Logger, LogFields } from './support/logger.js';
export * from './support/errors.js';
