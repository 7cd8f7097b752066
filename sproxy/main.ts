import { hideBin } from 'yargs/helpers';
import { exitOnSignals, runCli } from '../common/ops/cli-options.js';
import { logRuntime, tuneGarbageCollector } from '../common/ops/runtime.js';
import { createProcessLogger } from '../common/ops/log-setup.js';
import { logSecretFileWarning } from '../common/ops/secret-file-mode.js';
import { parseSproxyArgs } from './cli.js';
import { startSproxy } from './sproxy.js';

runCli('sproxy', async () => {
  const gcTuned = tuneGarbageCollector();
  const options = parseSproxyArgs(hideBin(process.argv));
  const logger = createProcessLogger('sproxy', options.logLevel, options.logFormat);
  logRuntime(logger, gcTuned);
  logSecretFileWarning(logger, options.secretFileWarning);
  const running = await startSproxy(options, logger);
  exitOnSignals(() => running.close());
});
