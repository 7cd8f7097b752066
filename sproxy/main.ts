import { hideBin } from 'yargs/helpers';
import { exitOnSignals, runCli } from '../common/ops/cli-options.js';
import { logRuntime, tuneGarbageCollector } from '../common/ops/runtime.js';
import { createProcessLogger } from '../common/ops/log-setup.js';
import { logSecretFileWarning } from '../common/ops/secret-file-mode.js';
import { announceBootstrap } from './bootstrap.js';
import { serveBootstrap } from './bootstrap-serve.js';
import { parseSproxyArgs } from './cli.js';
import { startSproxy } from './sproxy.js';

runCli('sproxy', async () => {
  const gcTuned = tuneGarbageCollector();
  const args = hideBin(process.argv);
  const options = parseSproxyArgs(args);
  // The half that ssh runs only starts the other and says where it listens: no logger, no proxy.
  if (options.bootstrap?.role === 'announce') process.exit(await announceBootstrap(args, options.bootstrap));
  const logger = createProcessLogger('sproxy', options.logLevel, options.logFormat);
  logRuntime(logger, gcTuned);
  logSecretFileWarning(logger, options.secretFileWarning);
  if (options.bootstrap?.role === 'serve') process.exit(await serveBootstrap(options, options.bootstrap, logger));
  const running = await startSproxy(options, logger);
  exitOnSignals(() => running.close());
});
