import { closeSync, writeSync } from 'node:fs';
import { formatPortRange } from '../common/ops/bootstrap-line.js';
import { validateSecret } from '../common/transport/tls-psk.js';
import { formatHostPort } from '../common/transport/address.js';
import type { Logger } from '../common/support/logger.js';
import { readSecretLine } from './bootstrap.js';
import type { BootstrapOptions, SproxyOptions } from './cli.js';
import { startSproxy, type RunningSproxy } from './sproxy.js';

/** The descriptor on which the serving half tells the announcing half how its start went. */
const STATUS_FD = 3;

/**
 * How long a bootstrap sproxy waits for its client's first link, at most (the resume window if
 * shorter): cproxy links within seconds of reading the announcement, or never will (a firewall).
 */
export const FIRST_CLIENT_WAIT_MS = 60_000;

/**
 * The background half of `sproxy --bootstrap`: takes the secret from stdin, listens on the first
 * free port of the range, says which on the status pipe, and serves its one client (cli.ts sets
 * --max-clients 1). It exits once that client has said goodbye (its clean exit sends GOAWAY), has
 * stayed away for the resume window, or never came, or a signal stops it. Resolves with the exit status.
 */
export async function serveBootstrap(options: SproxyOptions, bootstrap: BootstrapOptions, logger: Logger): Promise<number> {
  const secret = validateSecret(await readSecretLine(process.stdin), 'the bootstrap');
  const running = await listenInRange({ ...options, secret }, bootstrap, logger);
  if (running === null) {
    const reason = `no free port in ${formatPortRange(bootstrap.portRange)} to listen on (all in use; give another --port-range)`;
    logger.error({ portRange: formatPortRange(bootstrap.portRange) }, reason);
    reportStatus(`error ${reason}`);
    return 1;
  }
  reportStatus(`listening ${running.address.port}`);
  logger.info({ port: running.address.port, target: formatHostPort(options.target) }, 'bootstrap sproxy serving one client');

  const reason = await new Promise<string>((resolve) => {
    const firstWaitMs = Math.min(FIRST_CLIENT_WAIT_MS, options.resumeWindowMs);
    const noClient = setTimeout(() => resolve(`no client came within ${firstWaitMs} ms`), firstWaitMs);
    running.endpoint.once('client-up', () => clearTimeout(noClient));
    running.endpoint.on('client-dropped', ({ reason: why }) => resolve(`the client is gone (${why})`));
    running.endpoint.on('client-expired', () => resolve('the client did not come back within the resume window'));
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => resolve(`stopped by ${signal}`));
  });
  logger.info({ reason }, 'bootstrap sproxy exiting');
  await running.close();
  return 0;
}

/** Starts sproxy on the first port of the range it can listen on; null when every one is taken. */
async function listenInRange(options: SproxyOptions, bootstrap: BootstrapOptions, logger: Logger): Promise<RunningSproxy | null> {
  for (let port = bootstrap.portRange.low; port <= bootstrap.portRange.high; port++) {
    try {
      return await startSproxy({ ...options, listen: { host: options.listen.host, port } }, logger);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'EADDRINUSE' && code !== 'EACCES') throw error;
    }
  }
  return null;
}

/** One line to the announcing half, then the pipe is closed: nothing else goes there. */
function reportStatus(line: string): void {
  try {
    writeSync(STATUS_FD, `${line}\n`);
    closeSync(STATUS_FD);
  } catch {
    // Started by hand, without the pipe: the log has it.
  }
}
