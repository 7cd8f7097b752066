import { randomBytes } from 'node:crypto';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { formatHostPort, type HostPort } from '../common/transport/address.js';
import { bridgeSocket, LOCAL_SOCKET_HIGH_WATER_BYTES } from '../common/forwarding/bridge.js';
import { ClientEndpoint } from '../common/endpoints/client-endpoint.js';
import { adoptDirectReads } from '../common/transport/direct-reads.js';
import { listenOn } from '../common/transport/listen.js';
import { describeError, type Logger } from '../common/support/logger.js';
import { dialLink } from '../common/transport/dial-link.js';
import { serveSocks } from '../common/forwarding/socks-server.js';
import { clientMetrics } from '../common/ops/endpoint-metrics.js';
import { serveMetrics, type MetricsServer } from '../common/ops/metrics-server.js';
import { startRemoteForwards } from './remote-forwards.js';
import { CLIENT_ID_BYTES, SERVER_SESSION_ID_BIT } from '../common/protocol/constants.js';
import type { CproxyOptions } from './cli.js';

export interface RunningCproxy {
  /** The first forward's listening address (a -D's if there are only those; null with -R alone). */
  readonly address: AddressInfo | null;
  /** Every forward's: those of CproxyOptions.forwards in order, then those of its dynamicForwards. */
  readonly addresses: readonly AddressInfo[];
  readonly endpoint: ClientEndpoint;
  /** Stops listening, tells sproxy, resets the user connections. */
  close(): Promise<void>;
}

/** cproxy: every accepted user connection becomes one session over the client endpoint's link. */
export async function startCproxy(options: CproxyOptions, logger: Logger): Promise<RunningCproxy> {
  const serverName = formatHostPort(options.server);
  // Ours for the process's life: each link names it to the balancer, if any, before TLS (§0).
  const clientId = randomBytes(CLIENT_ID_BYTES);
  const endpoint = new ClientEndpoint({
    clientId,
    dial: () => dialLink(options.server.host, options.server.port, options.secret, clientId),
    serverName,
    logger,
    // Socket chunks are fresh buffers that nobody writes to again: no need to copy them.
    copyWrites: false,
    // A remote forward's session is acknowledged once its target here answered.
    confirmOpens: true,
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
  // Counting from the first event on: the endpoint is dialling already.
  const metrics = options.metrics === null ? null : clientMetrics(endpoint);
  const userSockets = new Set<Socket>();
  const remoteTargetSockets = startRemoteForwards(options.remoteForwards, endpoint, logger);
  endpoint.on('session-finished', (session, reason, detail) => {
    // The window it ended with: grown past --window, the path's product called for more.
    const fields = { session: session.id, reason, detail, windowKiB: Math.round(session.windowBytes / 1024) };
    if (reason === 'lost') logger.warn(fields, 'session lost; closing the user connection');
    // sproxy would not, or could not, reach the target (§4.2): the user wants to know why.
    else if (reason === 'reset-by-peer' && !session.established && session.id < SERVER_SESSION_ID_BIT) logger.warn(fields, 'session refused by sproxy');
    else logger.info(fields, 'session closed');
  });

  if (options.secret === null) {
    logger.warn({ server: serverName }, 'no shared secret: the link is neither encrypted nor authenticated');
  }
  // Every forward's listener, in order; one that cannot listen is fatal (the caller says why).
  const listeners: Array<{ server: Server; address: AddressInfo }> = [];
  let metricsServer: MetricsServer | null = null;
  const services: Array<{ listen: HostPort; serve: Serve; fields: Record<string, unknown> }> = [
    ...options.forwards.map(({ listen, target }) => {
      const name = target === null ? undefined : formatHostPort(target);
      const serve: Serve = (socket, label) => {
        const session = endpoint.openSession(name);
        logger.info({ ...label, session: session.id, ...(name === undefined ? {} : { target: name }), link: endpoint.state }, 'session opened');
        bridgeSocket(socket, session, logger, { session: session.id });
      };
      return { listen, serve, fields: name === undefined ? {} : { target: name } };
    }),
    ...options.dynamicForwards.map(({ listen }) => {
      const serve: Serve = (socket, label) => serveSocks(socket, (target) => endpoint.openSession(target), logger, label);
      return { listen, serve, fields: { socks: true } };
    }),
  ];
  try {
    for (const { listen, serve } of services) listeners.push(await listenForward(listen, serve, endpoint, userSockets, logger));
    if (metrics !== null && options.metrics !== null) metricsServer = await serveMetrics(metrics, options.metrics, logger);
  } catch (error) {
    for (const { server } of listeners) server.close();
    endpoint.close('cproxy could not listen');
    throw error;
  }
  for (const [index, { address }] of listeners.entries()) {
    const listen = formatHostPort({ host: address.address, port: address.port });
    logger.info({ listen, server: serverName, ...services[index]?.fields }, 'cproxy listening; sessions go to sproxy');
  }
  const address = listeners[0]?.address ?? null;

  return {
    address,
    addresses: listeners.map((listener) => listener.address),
    endpoint,
    async close() {
      logger.info({}, 'cproxy shutting down');
      const closed = Promise.all([
        ...listeners.map(({ server }) => new Promise<void>((resolve) => server.close(() => resolve()))),
        metricsServer?.close(),
      ]);
      const goneAway = endpoint.close('cproxy shutting down');
      // The sessions are lost, not finished: the applications get a reset, not an end of stream.
      for (const socket of [...userSockets, ...remoteTargetSockets]) socket.resetAndDestroy();
      // The process exits once this resolves: only then is the GOAWAY sure to be out.
      await Promise.all([closed, goneAway]);
    },
  };
}

/** Serves one accepted connection of a forward. */
type Serve = (socket: Socket, label: { from: string }) => void;

/**
 * Listens for one forward: each accepted connection is served by `serve` (a session to the
 * forward's target, or a SOCKS exchange first), unless authentication with sproxy is failing.
 */
async function listenForward(
  listen: HostPort,
  serve: Serve,
  endpoint: ClientEndpoint,
  userSockets: Set<Socket>,
  logger: Logger,
): Promise<{ server: Server; address: AddressInfo }> {
  const server: Server = createServer({ allowHalfOpen: true, noDelay: true, highWaterMark: LOCAL_SOCKET_HIGH_WATER_BYTES }, (socket) => {
    const from = `${socket.remoteAddress}:${socket.remotePort}`;
    if (endpoint.authenticationFailed) {
      // Holding the connection would only make the application wait for a link that cannot come.
      logger.warn({ from }, 'connection refused: authentication with sproxy is failing');
      socket.on('error', () => {});
      socket.resetAndDestroy();
      return;
    }
    adoptDirectReads(socket);
    userSockets.add(socket);
    socket.on('close', () => userSockets.delete(socket));
    serve(socket, { from });
  });
  const address = await listenOn(server, listen);
  // Later errors are logged and survived.
  server.on('error', (error) => logger.error({ reason: describeError(error) }, 'listener error'));
  return { server, address };
}
