import { hideBin } from 'yargs/helpers';
import { exitOnSignals, logRuntime, runCli } from '../common/ops/cli-options.js';
import { createProcessLogger } from '../common/ops/log-setup.js';
import { parseCproxyArgs } from './cli.js';
import { startCproxy } from './cproxy.js';

runCli('cproxy', async () => {
  const options = parseCproxyArgs(hideBin(process.argv));
  const logger = createProcessLogger('cproxy', options.logLevel, options.logFormat);
  logRuntime(logger);
  const running = await startCproxy(options, logger);
  exitOnSignals(() => running.close());
});
