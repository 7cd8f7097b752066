import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { formatHostPort, parseHostPort } from '../common/transport/address.js';
import { failWithUsageError, parsePositiveInteger, runCli } from '../common/ops/cli-options.js';
import { createLineService } from './line-service.js';
import { createTemporarySecret } from './temporary-secret.js';

const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * `npm run demo`: sproxy, cproxy and a target on this machine, ready for `telnet localhost 5200`.
 * With --cut-every, a relay between cproxy and sproxy drops the link every few seconds, so that
 * a person can watch the session pause and resume.
 */
runCli('demo', async () => {
  const args = yargs(hideBin(process.argv))
    .scriptName('npm run demo --')
    .usage('Usage: npm run demo -- [--cut-every SECONDS] [--target HOST:PORT] [--port PORT] [--link-port PORT]')
    .option('cut-every', { type: 'string', describe: 'cut the cproxy-sproxy link every SECONDS', requiresArg: true })
    .option('target', { type: 'string', describe: 'use this service instead of the built-in one', requiresArg: true })
    .option('port', { type: 'string', default: '5200', describe: 'where cproxy listens (telnet here)', requiresArg: true })
    .option('link-port', { type: 'string', default: '6200', describe: 'where sproxy listens', requiresArg: true })
    .strict()
    .fail(failWithUsageError)
    .help()
    .parseSync();
  const cutEveryMs = args['cut-every'] === undefined ? null : parsePositiveInteger(args['cut-every'], 'cut-every', 1, 3600) * 1000;
  const userPort = parsePositiveInteger(args.port, 'port', 1, 65535);
  const linkPort = parsePositiveInteger(args['link-port'], 'link-port', 1, 65535);

  let targetName: string;
  if (args.target === undefined) {
    const service = createLineService();
    service.listen(0, '127.0.0.1');
    await once(service, 'listening');
    targetName = formatHostPort({ host: '127.0.0.1', port: (service.address() as AddressInfo).port });
    service.unref();
  } else {
    targetName = formatHostPort(parseHostPort(args.target, '--target'));
  }

  const children: ChildProcess[] = [];
  // The link is keyed by a fresh random secret, as a real deployment's would be.
  const secret = createTemporarySecret();
  const start = (name: 'cproxy' | 'sproxy', argv: string[]): void => {
    const child = spawn(process.execPath, [join(REPO_ROOT, 'bin', `${name}.js`), ...argv, '--secret-file', secret.file, '--log-format', 'pretty'], {
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    child.on('exit', (code, signal) => {
      if (!stopping) {
        process.stderr.write(`demo: ${name} exited (${signal ?? code}); stopping\n`);
        stop(1);
      }
    });
    children.push(child);
  };

  start('sproxy', ['--listen', `127.0.0.1:${linkPort}`, '--target', targetName]);
  let serverPort = linkPort;
  if (cutEveryMs !== null) serverPort = await startLinkCutter(linkPort, cutEveryMs);
  start('cproxy', ['--listen', `127.0.0.1:${userPort}`, '--server', `127.0.0.1:${serverPort}`]);

  process.stdout.write(
    [
      '',
      `  eternal-tcp demo: cproxy on 127.0.0.1:${userPort} ══ link ══ sproxy on 127.0.0.1:${linkPort} ── ${targetName}${args.target === undefined ? ' (built-in line service)' : ''}`,
      '',
      `  In another terminal:   telnet localhost ${userPort}`,
      '  then type:             count 100',
      cutEveryMs === null
        ? '  Cut the link yourself: restart with  npm run demo -- --cut-every 5'
        : `  The link is cut every ${cutEveryMs / 1000} s: watch the log, and see that no line is lost.`,
      '  Stop with Ctrl-C.',
      '',
    ].join('\n') + '\n',
  );

  let stopping = false;
  const stop = (code: number): void => {
    if (stopping) return;
    stopping = true;
    for (const child of children) child.kill('SIGTERM');
    setTimeout(() => process.exit(code), 1500).unref();
    Promise.all(children.map((child) => (child.exitCode === null ? once(child, 'exit') : null))).then(
      () => process.exit(code),
      () => process.exit(code),
    );
  };
  process.on('SIGINT', () => stop(0));
  process.on('SIGTERM', () => stop(0));
});

/**
 * A relay in the link's path that kills every connection through it every `everyMs`: to cproxy
 * and sproxy it looks like a path that breaks (each side sees its link socket die).
 */
async function startLinkCutter(sproxyPort: number, everyMs: number): Promise<number> {
  const pairs = new Set<[Socket, Socket]>();
  const relay = createServer((inbound) => {
    const outbound = connect({ host: '127.0.0.1', port: sproxyPort });
    const pair: [Socket, Socket] = [inbound, outbound];
    pairs.add(pair);
    const drop = (): void => {
      pairs.delete(pair);
      inbound.destroy();
      outbound.destroy();
    };
    inbound.on('error', drop).on('close', drop);
    outbound.on('error', drop).on('close', drop);
    inbound.pipe(outbound).pipe(inbound);
  });
  relay.listen(0, '127.0.0.1');
  await once(relay, 'listening');
  setInterval(() => {
    if (pairs.size === 0) return;
    process.stderr.write(`demo: ✂ cutting the link (${pairs.size} connection${pairs.size === 1 ? '' : 's'})\n`);
    for (const [inbound, outbound] of [...pairs]) {
      inbound.resetAndDestroy();
      outbound.resetAndDestroy();
    }
  }, everyMs).unref();
  return (relay.address() as AddressInfo).port;
}
