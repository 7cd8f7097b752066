import type { AddressInfo, Socket } from 'node:net';
import { formatHostPort, parseHostPort, type HostPort } from '../common/transport/address.js';
import { allowingRule } from '../common/forwarding/target-policy.js';
import { connectTarget } from '../common/forwarding/connect-target.js';
import { RemoteListeners } from './remote-listeners.js';
import { listenOn } from '../common/transport/listen.js';
import { describeError, type Logger } from '../common/support/logger.js';
import { RepeatCollapsingLogger } from '../common/support/repeat-collapsing-logger.js';
import { systemClock } from '../common/support/clock.js';
import { ServerEndpoint } from '../common/endpoints/server-endpoint.js';
import { createLinkServer } from '../common/transport/link-server.js';
import { countingRefusals, serverMetrics } from '../common/ops/endpoint-metrics.js';
import { serveMetrics, type MetricsServer } from '../common/ops/metrics-server.js';
import type { SproxyOptions } from './cli.js';

export interface RunningSproxy {
  readonly address: AddressInfo;
  readonly endpoint: ServerEndpoint;
  /** Stops listening, tells every client (GOAWAY), resets every session. */
  close(): Promise<void>;
}

/** sproxy: each session a client opens becomes one TCP connection to the target. */
export async function startSproxy(options: SproxyOptions, logger: Logger): Promise<RunningSproxy> {
  const endpoint = new ServerEndpoint({
    logger,
    copyWrites: false,
    // A session's OPEN is acknowledged once its target answers: cproxy's SOCKS replies wait for it.
    confirmOpens: true,
    config: {
      heartbeatIntervalMs: options.heartbeatIntervalMs,
      deadAfterMs: options.deadAfterMs,
      resumeWindowMs: options.resumeWindowMs,
      windowBytes: options.windowBytes,
      maxWindowBytes: options.maxWindowBytes,
      sendBudgetBytes: options.sendBudgetBytes,
      maxPendingLinks: options.maxUnauthenticated,
      maxClients: options.maxClients,
      maxSessionsPerClient: options.maxSessionsPerClient,
    },
  });
  const metrics = options.metrics === null ? null : serverMetrics(endpoint);
  const targetSockets = new Set<Socket>();
  const linkSockets = new Set<Socket>();
  const defaultTarget = formatHostPort(options.target);
  // A client with the wrong secret fails the same way on every attempt: its lines collapse into a
  // count per host, code and reason.
  const peerFailures = new RepeatCollapsingLogger(logger, {
    clock: systemClock,
    identify: (fields) => [peerHost(String(fields['peer'])), fields['code'], fields['reason']],
  });
  // A flood comes from anywhere: its refusals collapse by limit alone, whatever the peer.
  const refusals = new RepeatCollapsingLogger(logger, { clock: systemClock, identify: (fields) => [fields['reason']] });
  const refusalMessage = 'connection refused: limit reached';
  const remoteListeners = new RemoteListeners(endpoint, options.allowListenRules, logger);

  endpoint.on('session', (session, context) => {
    const targetName = context.target ?? defaultTarget;
    const target = allowedTarget(targetName, defaultTarget, options);
    if (target === null) {
      logger.warn({ client: short(context.clientId), session: session.id, target: targetName }, 'session refused: target not allowed');
      session.on('error', () => {});
      session.destroy(new Error(`target ${targetName} is not allowed by sproxy (see its --allow)`));
      return;
    }
    const label = { client: short(context.clientId), session: session.id };
    logger.info({ ...label, peer: context.peer, target: formatHostPort(target) }, 'session opened');
    const socket = connectTarget(session, target, logger, label);
    targetSockets.add(socket);
    socket.on('close', () => targetSockets.delete(socket));
  });
  endpoint.on('session-finished', (session, reason, detail, context) => {
    const windowKiB = Math.round(session.windowBytes / 1024); // grown past --window: the path called for more
    logger.info({ client: short(context.clientId), session: session.id, reason, detail, windowKiB }, 'session closed');
  });
  endpoint.on('client-up', ({ clientId, peer, resumed, downMs, summary }) => {
    logger.info(
      { client: short(clientId), peer, downMs, sessions: summary.sessions, resentPackets: summary.resentPackets },
      resumed ? 'link up: client resumed' : 'link up: new client',
    );
  });
  endpoint.on('link-down', ({ clientId, peer, error }) => {
    const fields = { client: clientId === null ? null : short(clientId), peer, code: error.code, reason: error.message };
    // Before the handshake, a failure is somebody who does not speak the protocol: say so loudly.
    if (error.code === 'ETCP_ERR_AUTH') peerFailures.warn(fields, 'authentication failed');
    else if (error.code === 'ETCP_ERR_LIMIT' && clientId === null) refusals.warn(fields, refusalMessage);
    else if (clientId === null) logger.warn(fields, 'connection rejected');
    else logger.warn(fields, 'link down');
  });
  endpoint.on('client-expired', ({ clientId, sessions }) => {
    logger.warn({ client: short(clientId), sessions }, 'client did not come back within the resume window');
  });

  const server = createLinkServer(
    {
      secret: options.secret,
      handshakeTimeoutMs: options.deadAfterMs,
      maxUnauthenticated: options.maxUnauthenticated,
      pendingAfterHandshake: () => endpoint.pendingLinkCount,
      proxyProtocol: options.proxyProtocol,
    },
    countingRefusals({
      onConnection: (socket) => {
        linkSockets.add(socket);
        socket.once('close', () => linkSockets.delete(socket));
        return true;
      },
      onLimit: (peer, limit) => refusals.warn({ peer, reason: `too many unauthenticated connections (limit ${limit})` }, refusalMessage),
      onLink: (socket, peer) => endpoint.handleConnection(socket, peer),
      onAuthFailure: (peer, reason) => peerFailures.warn({ peer, code: 'ETCP_ERR_AUTH', reason }, 'authentication failed'),
      onSilent: (peer, reason) => logger.warn({ peer, code: 'ETCP_ERR_HANDSHAKE', reason }, 'connection rejected'),
      onProxyHeaderRefused: (peer, reason) => logger.warn({ peer, code: 'ETCP_ERR_HANDSHAKE', reason }, 'connection rejected'),
      // A load balancer checks sproxy every few seconds: a line per check only when asked for.
      onHealthCheck: (peer, detail) => logger.debug({ peer, detail }, 'connection closed before a link: a health check?'),
    }, metrics),
  );
  let address: AddressInfo;
  let metricsServer: MetricsServer | null = null;
  try {
    address = await listenOn(server, options.listen);
    if (metrics !== null && options.metrics !== null) metricsServer = await serveMetrics(metrics, options.metrics, logger);
  } catch (error) {
    // Nothing was served: let go of what was made, so that the caller may try another port.
    if (server.listening) server.close();
    endpoint.close('sproxy could not listen');
    remoteListeners.close();
    throw error;
  }
  // Failing to listen is fatal (the caller says why); later errors are logged and survived.
  server.on('error', (error) => logger.error({ reason: describeError(error) }, 'listener error'));
  logger.info(
    {
      listen: formatHostPort({ host: address.address, port: address.port }),
      target: formatHostPort(options.target),
      ...(options.proxyProtocol ? { proxyProtocol: 'v2 header required' } : {}),
    },
    'sproxy listening; sessions go to the target',
  );

  return {
    address,
    endpoint,
    async close() {
      logger.info({}, 'sproxy shutting down');
      const closed = Promise.all([new Promise<void>((resolve) => server.close(() => resolve())), metricsServer?.close()]);
      endpoint.close('sproxy shutting down');
      remoteListeners.close();
      for (const socket of targetSockets) socket.resetAndDestroy();
      for (const socket of linkSockets) socket.destroy();
      await closed;
      // The counts still open, so that none is lost (and no timer of theirs outlives sproxy).
      peerFailures.flush();
      refusals.flush();
    },
  };
}

/** Client ids are 32 hex digits; the first 8 tell clients apart in a log. */
function short(clientId: string): string {
  return clientId.slice(0, 8);
}

/** "203.0.113.7:51234" → "203.0.113.7", "[2001:db8::1]:51234" → "[2001:db8::1]": each connection has its own port. */
function peerHost(peer: string): string {
  return peer.replace(/:\d+$/, '');
}

/**
 * The target a client asked for ("host:port"), if sproxy lets it reach it: its --target, or one
 * that an --allow pattern matches; null otherwise (a name that is not HOST:PORT included).
 */
function allowedTarget(name: string, defaultTarget: string, options: SproxyOptions): HostPort | null {
  if (name === defaultTarget) return options.target;
  // ":port": that port of the default target's host (cproxy --ports, Tcpipe's form).
  if (/^:\d{1,5}$/.test(name)) {
    const port = Number(name.slice(1));
    const target = { host: options.target.host, port };
    const allowed = port === options.target.port || options.targetPorts.includes(port) || allowingRule(options.allowRules, target) !== null;
    return allowed ? target : null;
  }
  let target: HostPort;
  try {
    target = parseHostPort(name, 'target');
  } catch {
    return null;
  }
  return allowingRule(options.allowRules, target) === null ? null : target;
}
