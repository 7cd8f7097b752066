import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { AddressInfo, Server } from 'node:net';
import type { Clock } from '../support/clock.js';
import { ClientEndpoint } from './client-endpoint.js';
import type { ClientConfig, ServerConfig } from './config.js';
import type { Logger } from '../support/logger.js';
import { ServerEndpoint, type SessionContext } from './server-endpoint.js';
import type { Session } from '../engine/session.js';
import { listenOn } from '../transport/listen.js';
import { dialLink } from '../transport/dial-link.js';
import { createLinkServer } from '../transport/link-server.js';
import { validateSecret } from '../transport/tls-psk.js';
import { CLIENT_ID_BYTES } from '../protocol/constants.js';

export interface ConnectOptions {
  host: string;
  port: number;
  /** Shared secret (at least 16 bytes): the link becomes TLS-PSK, as with cproxy --secret-file. */
  secret?: Buffer;
  config?: Partial<ClientConfig>;
  logger?: Logger;
  clock?: Clock;
}

/**
 * A stream that does not die: a Duplex to an eternal-tcp server (createServer, or sproxy) over a
 * link that reconnects by itself and resumes where it stopped. Write at once: bytes wait for the
 * link. The underlying endpoint closes once the stream has closed and its last bytes are
 * acknowledged. Buffers written are copied, so callers may reuse them.
 */
export function connect(options: ConnectOptions): Session {
  const clientId = randomBytes(CLIENT_ID_BYTES);
  const secret = options.secret === undefined ? null : validateSecret(options.secret, 'options.secret');
  const endpoint = new ClientEndpoint({
    clientId,
    dial: () => dialLink(options.host, options.port, secret, clientId),
    serverName: `${options.host}:${options.port}`,
    ...(options.config === undefined ? {} : { config: options.config }),
    ...(options.logger === undefined ? {} : { logger: options.logger }),
    ...(options.clock === undefined ? {} : { clock: options.clock }),
    copyWrites: true,
  });
  const session = endpoint.openSession();
  // The endpoint outlives the stream until both are done: the protocol (our last packet
  // acknowledged) and the stream (read to its end, which releases our final ack).
  let protocolDone = false;
  let streamClosed = false;
  const closeWhenDone = (): void => {
    if (protocolDone && streamClosed) endpoint.close('stream closed');
  };
  endpoint.on('session-finished', (finished) => {
    if (finished !== session) return;
    protocolDone = true;
    closeWhenDone();
  });
  session.once('close', () => {
    streamClosed = true;
    // Let the final ack, queued as the stream ended, reach the link before GOAWAY.
    setImmediate(closeWhenDone);
  });
  return session;
}

export interface EternalServerOptions {
  /** Shared secret: links must be TLS-PSK with the same one (see connect's `secret`). */
  secret?: Buffer;
  config?: Partial<ServerConfig>;
  logger?: Logger;
  clock?: Clock;
}

export interface EternalServerEvents {
  /** A client opened a stream. */
  connection: [stream: Session, context: SessionContext];
  /** A connection failed to authenticate (wrong or no secret). */
  'auth-failure': [peer: string, reason: string];
}

/**
 * The server side of `connect()`: each stream a client opens arrives as a 'connection' Duplex,
 * which survives its client's link dying and coming back (from any address).
 */
export class EternalServer extends EventEmitter<EternalServerEvents> {
  readonly endpoint: ServerEndpoint;
  readonly #server: Server;

  constructor(options: EternalServerOptions = {}) {
    super();
    const { secret, ...endpointOptions } = options;
    this.endpoint = new ServerEndpoint({ ...endpointOptions, copyWrites: true });
    this.endpoint.on('session', (session, context) => this.emit('connection', session, context));
    this.#server = createLinkServer(
      {
        secret: secret === undefined ? null : validateSecret(secret, 'options.secret'),
        handshakeTimeoutMs: this.endpoint.config.deadAfterMs,
        maxUnauthenticated: this.endpoint.config.maxPendingLinks,
        pendingAfterHandshake: () => this.endpoint.pendingLinkCount,
      },
      {
        onConnection: () => true,
        onLimit: () => {}, // the library has no log; its limits are in the configuration
        onLink: (socket, peer) => this.endpoint.handleConnection(socket, peer),
        onAuthFailure: (peer, reason) => this.emit('auth-failure', peer, reason),
        onSilent: () => {},
      },
    );
  }

  /** Listens on `port` (0: any free port) and resolves with the address. */
  listen(port: number, host = '127.0.0.1'): Promise<AddressInfo> {
    return listenOn(this.#server, { host, port });
  }

  /** Stops listening and ends every stream (its clients are told). */
  close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.endpoint.close();
    return closed;
  }
}

export function createServer(options: EternalServerOptions = {}, onConnection?: (stream: Session, context: SessionContext) => void): EternalServer {
  const server = new EternalServer(options);
  if (onConnection !== undefined) server.on('connection', onConnection);
  return server;
}
