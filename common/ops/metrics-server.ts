import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { formatHostPort, type HostPort } from '../transport/address.js';
import { listenOn } from '../transport/listen.js';
import { describeError, type Logger } from '../support/logger.js';
import { StartupError } from './cli-options.js';

/** What the server serves: the metrics' text, read at each request. */
export interface MetricsSource {
  readonly contentType: string;
  text(): Promise<string>;
}

export interface MetricsServer {
  readonly address: AddressInfo;
  /** Stops listening and ends the scrapers' kept-alive connections. */
  close(): Promise<void>;
}

export const METRICS_PATH = '/metrics';

/**
 * An HTTP server answering GET /metrics with `source`'s text, for Prometheus to scrape; any other
 * path is 404, any other method 405. Logs 'metrics listening' with its address. Rejects with a
 * StartupError naming --metrics if it cannot listen: not an EADDRINUSE that a caller trying ports
 * for its link (sproxy --bootstrap) would take for its own.
 */
export async function serveMetrics(source: MetricsSource, listen: HostPort, logger: Logger): Promise<MetricsServer> {
  const server: Server = createServer((request, response) => answer(source, request, response, logger));
  let address: AddressInfo;
  try {
    address = await listenOn(server, listen);
  } catch (error) {
    throw new StartupError(`cannot listen for --metrics on ${formatHostPort(listen)}: ${describeError(error)}`);
  }
  // Failing to listen is fatal; later errors are logged and survived.
  server.on('error', (error) => logger.error({ reason: describeError(error) }, 'metrics server error'));
  logger.info({ listen: formatHostPort({ host: address.address, port: address.port }), path: METRICS_PATH }, 'metrics listening');
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function answer(source: MetricsSource, request: IncomingMessage, response: ServerResponse, logger: Logger): void {
  const path = (request.url ?? '/').split('?', 1)[0];
  if (path !== METRICS_PATH) {
    respond(response, 404, 'text/plain; charset=utf-8', `not found: the metrics are at ${METRICS_PATH}\n`);
    return;
  }
  if (request.method !== 'GET') {
    response.setHeader('Allow', 'GET');
    respond(response, 405, 'text/plain; charset=utf-8', 'method not allowed\n');
    return;
  }
  source.text().then(
    (text) => respond(response, 200, source.contentType, text),
    (error: unknown) => {
      logger.error({ reason: describeError(error) }, 'metrics could not be collected');
      respond(response, 500, 'text/plain; charset=utf-8', 'metrics could not be collected\n');
    },
  );
}

function respond(response: ServerResponse, status: number, contentType: string, body: string): void {
  response.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body) });
  response.end(body);
}
