import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { failWithUsageError, parsePositiveInteger, runCli, UsageError } from '../common/ops/cli-options.js';
import { createTemporarySecret } from './temporary-secret.js';
import { TwoHostNetwork } from '../netlab/two-hosts.js';

const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const LINE_SERVICE_PORT = 2323;

/**
 * `npm run demo:roam` (root): two hosts in network namespaces, sproxy and a target on one, cproxy
 * on the other; the client host's address changes on Enter (or every N seconds) while a person's
 * telnet session goes on.
 */
runCli('demo:roam', async () => {
  const args = yargs(hideBin(process.argv))
    .scriptName('npm run demo:roam --')
    .usage('Usage: sudo npm run demo:roam -- [--roam-every SECONDS] [--telnetd]')
    .option('roam-every', { type: 'string', describe: 'change the client address every SECONDS (default: on Enter)', requiresArg: true })
    .option('telnetd', { type: 'boolean', default: false, describe: 'put the real telnetd (inetutils) behind sproxy' })
    .strict()
    .fail(failWithUsageError)
    .help()
    .parseSync();
  if (process.getuid?.() !== 0) throw new UsageError('needs root for network namespaces: sudo npm run demo:roam');
  const roamEveryMs = args['roam-every'] === undefined ? null : parsePositiveInteger(args['roam-every'], 'roam-every', 1, 3600) * 1000;

  const network = new TwoHostNetwork('demo');
  network.create();
  const children: ChildProcess[] = [];
  const run = (ns: string, command: string[]): void => {
    const child = spawn('ip', ['netns', 'exec', ns, ...command], { stdio: ['ignore', 'inherit', 'inherit'] });
    children.push(child);
  };
  const stop = (): void => {
    for (const child of children) child.kill('SIGTERM');
    setTimeout(() => {
      network.destroyNamespaces();
      process.exit(0);
    }, 500);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);

  const targetPort = args.telnetd ? 23 : LINE_SERVICE_PORT;
  if (args.telnetd) {
    run(network.server, ['socat', 'TCP-LISTEN:23,bind=127.0.0.1,fork,reuseaddr', 'EXEC:/usr/sbin/telnetd -h -E /bin/sh,nofork']);
  } else {
    run(network.server, [process.execPath, join(REPO_ROOT, 'dist', 'demo', 'line-service-main.js'), String(LINE_SERVICE_PORT)]);
  }
  const bin = (name: string): string => join(REPO_ROOT, 'bin', `${name}.js`);
  const secret = createTemporarySecret();
  const common = ['--secret-file', secret.file, '--log-format', 'pretty'];
  run(network.server, [process.execPath, bin('sproxy'), '--listen', `${TwoHostNetwork.SERVER_ADDRESS}:6200`, '--target', `127.0.0.1:${targetPort}`, ...common]);
  run(network.client, [process.execPath, bin('cproxy'), '--listen', '127.0.0.1:5200', '--server', `${TwoHostNetwork.SERVER_ADDRESS}:6200`, ...common]);

  process.stdout.write(
    [
      '',
      `  Two hosts: ${network.server} (${TwoHostNetwork.SERVER_ADDRESS}: sproxy, ${args.telnetd ? 'telnetd' : 'line service'}) and ${network.client} (${network.clientAddress}: cproxy)`,
      '',
      '  In another terminal, on the client host:',
      `      sudo ip netns exec ${network.client} telnet 127.0.0.1 5200`,
      args.telnetd ? '  then run:  for i in $(seq 1 100); do echo line $i; sleep 0.2; done' : '  then type:  count 100',
      roamEveryMs === null ? '  Press Enter here to change the client host\'s address.' : `  The client host's address changes every ${roamEveryMs / 1000} s.`,
      '  Stop with Ctrl-C.',
      '',
    ].join('\n') + '\n',
  );

  let next = 3;
  const roam = (): void => {
    const from = network.clientAddress;
    const to = `10.77.0.${next}`;
    next = next >= 250 ? 2 : next + 1;
    network.changeClientAddress(to);
    process.stdout.write(`demo:roam: client host address ${from} -> ${to}: the old link goes silent; watch cproxy redial from ${to}\n`);
  };
  if (roamEveryMs === null) createInterface({ input: process.stdin }).on('line', roam);
  else setInterval(roam, roamEveryMs);
});
