import { hideBin } from 'yargs/helpers';
import { exitOnSignals, logRuntime, runCli } from '../common/ops/cli-options.js';
import { createProcessLogger } from '../common/ops/log-setup.js';
import { parseSproxyArgs } from './cli.js';
import { startSproxy } from './sproxy.js';

runCli('sproxy', async () => {
  const options = parseSproxyArgs(hideBin(process.argv));
  const logger = createProcessLogger('sproxy', options.logLevel, options.logFormat);
  logRuntime(logger);
  const running = await startSproxy(options, logger);
  exitOnSignals(() => running.close());
});
