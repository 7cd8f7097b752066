import { hideBin } from 'yargs/helpers';
import { exitOnSignals, runCli } from '../common/ops/cli-options.js';
import { logRuntime, tuneGarbageCollector } from '../common/ops/runtime.js';
import { createProcessLogger } from '../common/ops/log-setup.js';
import { logSecretFileWarning } from '../common/ops/secret-file-mode.js';
import { parseCproxyArgs } from './cli.js';
import { startCproxy } from './cproxy.js';

runCli('cproxy', async () => {
  const gcTuned = tuneGarbageCollector();
  const options = parseCproxyArgs(hideBin(process.argv));
  const logger = createProcessLogger('cproxy', options.logLevel, options.logFormat);
  logRuntime(logger, gcTuned);
  logSecretFileWarning(logger, options.secretFileWarning);
  const running = await startCproxy(options, logger);
  exitOnSignals(() => running.close());
});
