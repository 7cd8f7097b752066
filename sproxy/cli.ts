import yargs from 'yargs';
import { formatHostPort, parseHostPort, parsePort, type HostPort } from '../common/address.js';
import {
  addSharedOptions,
  failWithUsageError,
  packageVersion,
  readSharedOptions,
  UsageError,
  type SharedCliOptions,
} from '../common/cli/shared.js';

export const SPROXY_DEFAULT_LISTEN: HostPort = { host: '0.0.0.0', port: 6200 };
export const SPROXY_DEFAULT_TARGET: HostPort = { host: '127.0.0.1', port: 23 };

export interface SproxyOptions extends SharedCliOptions {
  listen: HostPort;
  target: HostPort;
}

/** Parses sproxy's command line; throws UsageError/ConfigError with a one-line reason. */
export function parseSproxyArgs(args: string[]): SproxyOptions {
  const parsed = addSharedOptions(
    yargs(args)
      .scriptName('sproxy')
      .usage(
        [
          'Usage: sproxy [--listen [HOST:]PORT] [--target HOST:PORT] [options]',
          '       sproxy LPORT',
          '',
          'Takes links from cproxy and connects each session to the target service. Sessions outlive',
          'their link: when cproxy comes back (from any address) they resume where they stopped.',
        ].join('\n'),
      )
      .command('$0 [lport]', false)
      .positional('lport', { type: 'string', describe: 'port to listen on (original form)' })
      .option('listen', {
        type: 'string',
        describe: `accept links from cproxy on [HOST:]PORT (default ${formatHostPort(SPROXY_DEFAULT_LISTEN)})`,
        requiresArg: true,
      })
      .option('target', {
        type: 'string',
        describe: `connect each session to HOST:PORT (default ${formatHostPort(SPROXY_DEFAULT_TARGET)})`,
        requiresArg: true,
      }),
  )
    .example('sproxy', 'listen on 0.0.0.0:6200, sessions go to the telnetd on 127.0.0.1:23')
    .example('sproxy --listen 6200 --target 127.0.0.1:22', 'carry ssh instead')
    .example('sproxy 6200', 'the original programs\' form')
    .strict()
    .fail(failWithUsageError)
    .version(packageVersion())
    .help()
    .alias('h', 'help')
    .alias('V', 'version')
    .wrap(100)
    .parseSync();

  let listen = SPROXY_DEFAULT_LISTEN;
  if (parsed.lport !== undefined) {
    if (parsed.listen !== undefined) throw new UsageError('give either LPORT or --listen, not both');
    listen = { host: SPROXY_DEFAULT_LISTEN.host, port: parsePort(String(parsed.lport), 'LPORT') };
  } else if (parsed.listen !== undefined) {
    listen = parseHostPort(parsed.listen, '--listen', SPROXY_DEFAULT_LISTEN.host, true);
  }
  const target = parsed.target === undefined ? SPROXY_DEFAULT_TARGET : parseHostPort(parsed.target, '--target');
  return { ...readSharedOptions(parsed), listen, target };
}
