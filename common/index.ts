/**
 * eternal-tcp as a library: streams that survive the loss of their TCP connection, and the
 * engine under cproxy and sproxy.
 */
export { connect, createServer, EternalServer, type ConnectOptions, type EternalServerOptions } from './api.js';
export { ClientEndpoint, type ClientEndpointOptions, type ClientState, type Dialer } from './client-endpoint.js';
export { ServerEndpoint, type ServerEndpointOptions, type SessionContext } from './server-endpoint.js';
export { Session, type SessionState, type FinishReason } from './session.js';
export { bridgeSocket } from './bridge.js';
export type { ClientConfig, ServerConfig, EngineConfig } from './config.js';
export { DEFAULT_CLIENT_CONFIG, DEFAULT_SERVER_CONFIG } from './config.js';
export type { Clock, TimerHandle } from './clock.js';
export type { Logger, LogFields } from './logger.js';
export * from './errors.js';
