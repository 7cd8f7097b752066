import type { ClientEndpoint } from '../endpoints/client-endpoint.js';
import type { ServerEndpoint } from '../endpoints/server-endpoint.js';
import type { LinkServerHandlers } from '../transport/link-server.js';
import { packageVersion } from './cli-options.js';
import { ProxyMetrics, slowestPath } from './metrics.js';

/**
 * cproxy's metrics: its endpoint's events counted, its state read at each scrape, and the
 * process's own (CPU, memory, GC). Call it right after making the endpoint, before its first link
 * can come up; once per process.
 */
export function clientMetrics(endpoint: ClientEndpoint): ProxyMetrics {
  const metrics = new ProxyMetrics('cproxy', packageVersion(), {
    linksUp: () => (endpoint.state === 'up' ? 1 : 0),
    sessionsOpen: () => endpoint.sessionCount,
    traffic: () => endpoint.traffic,
    path: () => {
      const path = endpoint.linkPath;
      return path === null ? null : { rttMs: path.minRttMs, rateBitsPerSecond: path.rateBitsPerSecond };
    },
  }).withProcessMetrics();
  endpoint.on('down', (error) => metrics.linkDown(error.code));
  // A refused attempt never was a link that came up, but it is what sproxy's side counts as one
  // refused: the two proxies' counts of ETCP_ERR_AUTH tell the same story.
  endpoint.on('auth-refused', (error) => {
    metrics.authenticationFailed();
    metrics.linkDown(error.code);
  });
  endpoint.on('up', ({ knownClient, downMs }) => metrics.linkUp(knownClient, downMs));
  endpoint.on('session-finished', (_session, reason) => metrics.sessionFinished(reason));
  return metrics;
}

/** sproxy's metrics: its endpoint's events counted, its clients read at each scrape, and the process's own. Call it right after making the endpoint; once per process. */
export function serverMetrics(endpoint: ServerEndpoint): ProxyMetrics {
  const metrics = new ProxyMetrics('sproxy', packageVersion(), {
    linksUp: () => endpoint.linkedClientCount,
    sessionsOpen: () => endpoint.sessionCount,
    traffic: () => endpoint.traffic,
    path: () => slowestPath(endpoint.linkedClientPaths()),
  }).withProcessMetrics();
  endpoint.on('link-down', ({ error }) => {
    metrics.linkDown(error.code);
    // A resume with another client's id and a wrong token: a failure to authenticate as that client.
    if (error.code === 'ETCP_ERR_AUTH') metrics.authenticationFailed();
  });
  endpoint.on('client-up', ({ resumed, downMs }) => metrics.linkUp(resumed, downMs));
  endpoint.on('session-finished', (_session, reason) => metrics.sessionFinished(reason));
  return metrics;
}

/**
 * The link server's handlers, with the connections it refuses before the endpoint sees them
 * (a failed TLS handshake, silence, the unauthenticated limit, a bad PROXY header) counted as
 * refused links; as they are without metrics. A load balancer's health checks are not refusals.
 */
export function countingRefusals(handlers: LinkServerHandlers, metrics: ProxyMetrics | null): LinkServerHandlers {
  if (metrics === null) return handlers;
  return {
    ...handlers,
    onAuthFailure: (peer, reason) => {
      metrics.authenticationFailed();
      metrics.linkDown('ETCP_ERR_AUTH');
      handlers.onAuthFailure(peer, reason);
    },
    onSilent: (peer, reason) => {
      metrics.linkDown('ETCP_ERR_HANDSHAKE');
      handlers.onSilent(peer, reason);
    },
    onLimit: (peer, limit) => {
      metrics.linkDown('ETCP_ERR_LIMIT');
      handlers.onLimit(peer, limit);
    },
    onProxyHeaderRefused: (peer, reason) => {
      metrics.linkDown('ETCP_ERR_HANDSHAKE');
      handlers.onProxyHeaderRefused?.(peer, reason);
    },
  };
}
