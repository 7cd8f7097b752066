import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { formatHostPort } from '../common/transport/address.js';
import { bridgeSocket, LOCAL_SOCKET_HIGH_WATER_BYTES } from '../common/forwarding/bridge.js';
import { ClientEndpoint } from '../common/endpoints/client-endpoint.js';
import { adoptDirectReads } from '../common/transport/direct-reads.js';
import { listenOn } from '../common/transport/listen.js';
import { describeError, type Logger } from '../common/support/logger.js';
import { dialLink } from '../common/transport/dial-link.js';
import type { LocalForward } from '../common/forwarding/forward-spec.js';
import type { CproxyOptions } from './cli.js';

export interface RunningCproxy {
  /** The first forward's listening address. */
  readonly address: AddressInfo;
  /** Every forward's, in the order of CproxyOptions.forwards. */
  readonly addresses: readonly AddressInfo[];
  readonly endpoint: ClientEndpoint;
  /** Stops listening, tells sproxy, resets the user connections. */
  close(): Promise<void>;
}

/** cproxy: every accepted user connection becomes one session over the client endpoint's link. */
export async function startCproxy(options: CproxyOptions, logger: Logger): Promise<RunningCproxy> {
  const serverName = formatHostPort(options.server);
  const endpoint = new ClientEndpoint({
    dial: () => dialLink(options.server.host, options.server.port, options.secret),
    serverName,
    logger,
    // Socket chunks are fresh buffers that nobody writes to again: no need to copy them.
    copyWrites: false,
    config: {
      heartbeatIntervalMs: options.heartbeatIntervalMs,
      deadAfterMs: options.deadAfterMs,
      resumeWindowMs: options.resumeWindowMs,
      windowBytes: options.windowBytes,
      maxWindowBytes: options.maxWindowBytes,
      sendBudgetBytes: options.sendBudgetBytes,
      connectTimeoutMs: options.connectTimeoutMs,
      connectStaggerMs: options.connectStaggerMs,
      addressPollMs: options.addressPollMs,
      expressLane: options.expressLane,
    },
  });
  const userSockets = new Set<Socket>();
  endpoint.on('session-finished', (session, reason, detail) => {
    // The window it ended with: grown past --window, the path's product called for more.
    const fields = { session: session.id, reason, detail, windowKiB: Math.round(session.windowBytes / 1024) };
    if (reason === 'lost') logger.warn(fields, 'session lost; closing the user connection');
    else logger.info(fields, 'session closed');
  });

  if (options.secret === null) {
    logger.warn({ server: serverName }, 'no shared secret: the link is neither encrypted nor authenticated');
  }
  // Every forward's listener, in order; one that cannot listen is fatal (the caller says why).
  const listeners: Array<{ server: Server; address: AddressInfo }> = [];
  try {
    for (const forward of options.forwards) listeners.push(await listenForward(forward, endpoint, userSockets, logger));
  } catch (error) {
    for (const { server } of listeners) server.close();
    endpoint.close('cproxy could not listen');
    throw error;
  }
  for (const [index, { address }] of listeners.entries()) {
    const { target } = options.forwards[index] as LocalForward;
    logger.info(
      {
        listen: formatHostPort({ host: address.address, port: address.port }),
        server: serverName,
        ...(target === null ? {} : { target: formatHostPort(target) }),
      },
      'cproxy listening; sessions go to sproxy',
    );
  }
  const address = (listeners[0] as { address: AddressInfo }).address;

  return {
    address,
    addresses: listeners.map((listener) => listener.address),
    endpoint,
    async close() {
      logger.info({}, 'cproxy shutting down');
      const closed = Promise.all(listeners.map(({ server }) => new Promise<void>((resolve) => server.close(() => resolve()))));
      endpoint.close('cproxy shutting down');
      // The sessions are lost, not finished: the applications get a reset, not an end of stream.
      for (const socket of userSockets) socket.resetAndDestroy();
      await closed;
    },
  };
}

/**
 * Listens for one forward: each accepted connection becomes a session asking sproxy for the
 * forward's target (its default when none), spliced to the connection.
 */
async function listenForward(
  forward: LocalForward,
  endpoint: ClientEndpoint,
  userSockets: Set<Socket>,
  logger: Logger,
): Promise<{ server: Server; address: AddressInfo }> {
  const target = forward.target === null ? undefined : formatHostPort(forward.target);
  const server: Server = createServer({ allowHalfOpen: true, noDelay: true, highWaterMark: LOCAL_SOCKET_HIGH_WATER_BYTES }, (socket) => {
    if (endpoint.authenticationFailed) {
      // Holding the connection would only make the application wait for a link that cannot come.
      logger.warn({ from: `${socket.remoteAddress}:${socket.remotePort}` }, 'connection refused: authentication with sproxy is failing');
      socket.on('error', () => {});
      socket.resetAndDestroy();
      return;
    }
    adoptDirectReads(socket);
    const session = endpoint.openSession(target);
    const from = `${socket.remoteAddress}:${socket.remotePort}`;
    logger.info({ session: session.id, from, ...(target === undefined ? {} : { target }), link: endpoint.state }, 'session opened');
    userSockets.add(socket);
    socket.on('close', () => userSockets.delete(socket));
    bridgeSocket(socket, session, logger, { session: session.id });
  });
  const address = await listenOn(server, forward.listen);
  // Later errors are logged and survived.
  server.on('error', (error) => logger.error({ reason: describeError(error) }, 'listener error'));
  return { server, address };
}
