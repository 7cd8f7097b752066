import { hideBin } from 'yargs/helpers';
import { exitOnSignals, runCli, StartupError } from '../common/ops/cli-options.js';
import { logRuntime, tuneGarbageCollector } from '../common/ops/runtime.js';
import { createProcessLogger } from '../common/ops/log-setup.js';
import { logSecretFileWarning } from '../common/ops/secret-file-mode.js';
import { formatHostPort } from '../common/transport/address.js';
import type { ClientEndpoint } from '../common/endpoints/client-endpoint.js';
import { parseCproxyArgs } from './cli.js';
import { startCproxy } from './cproxy.js';
import { bootstrapOverSsh, unreachableReason } from './ssh-bootstrap.js';

/**
 * How long the first link to a sproxy started over ssh may take, in connect timeouts: it runs and
 * listens by then, so only a firewall (or a wrong address) keeps the link from coming.
 */
const FIRST_LINK_CONNECT_TIMEOUTS = 3;

runCli('cproxy', async () => {
  const gcTuned = tuneGarbageCollector();
  let options = parseCproxyArgs(hideBin(process.argv));
  const logger = createProcessLogger('cproxy', options.logLevel, options.logFormat);
  logRuntime(logger, gcTuned);
  logSecretFileWarning(logger, options.secretFileWarning);
  const { ssh } = options;
  if (ssh !== null) {
    const started = await bootstrapOverSsh(options, ssh, logger);
    logger.info({ server: formatHostPort(started.server), remoteLog: started.remoteLogFile }, 'sproxy started through ssh; ssh has exited');
    options = { ...options, server: started.server, secret: started.secret };
  }
  const running = await startCproxy(options, logger);
  exitOnSignals(() => running.close());
  if (ssh !== null) {
    const waitMs = FIRST_LINK_CONNECT_TIMEOUTS * options.connectTimeoutMs;
    const lastError = await firstLink(running.endpoint, waitMs);
    if (lastError !== undefined) {
      await running.close();
      throw new StartupError(unreachableReason(options.server, ssh, waitMs, lastError));
    }
  }
});

/** Waits for the endpoint's first link: undefined once it is up, else (after `waitMs`) the last error seen, or null. */
function firstLink(endpoint: ClientEndpoint, waitMs: number): Promise<string | null | undefined> {
  return new Promise((resolve) => {
    let lastError: string | null = null;
    const timer = setTimeout(() => resolve(lastError), waitMs);
    endpoint.on('retry', (info) => (lastError = info.error));
    endpoint.once('auth-failed', (error) => {
      clearTimeout(timer);
      resolve(error.message);
    });
    endpoint.once('up', () => {
      clearTimeout(timer);
      resolve(undefined);
    });
  });
}
