import yargs from 'yargs';
import { formatHostPort, parseHostPort, parsePort, type HostPort } from '../common/transport/address.js';
import {
  addSharedOptions,
  failWithUsageError,
  packageVersion,
  parsePositiveInteger,
  readSharedOptions,
  UsageError,
  type SharedCliOptions,
} from '../common/ops/cli-options.js';
import { parseWithConfigFile } from '../common/ops/config-file.js';
import { parseTargetRule, type TargetRule } from '../common/forwarding/target-policy.js';
import { DEFAULT_BOOTSTRAP_PORT_RANGE, formatPortRange, parsePortRange, type PortRange } from '../common/ops/bootstrap-line.js';
import { defaultBootstrapLogFile, sshServerAddress } from './bootstrap-defaults.js';

export const SPROXY_DEFAULT_LISTEN: HostPort = { host: '0.0.0.0', port: 6200 };
export const SPROXY_DEFAULT_TARGET: HostPort = { host: '127.0.0.1', port: 23 };

export interface SproxyOptions extends SharedCliOptions {
  listen: HostPort;
  target: HostPort;
  /** Targets a client may ask for besides the default one, as "host:port". */
  /** What clients may ask for besides --target (patterns: target-policy.ts). */
  allowRules: TargetRule[];
  /** Where clients' remote forwards (cproxy -R) may listen: none by default. */
  allowListenRules: TargetRule[];
  /** Ports of the target's host a client may ask for by port alone (cproxy --ports, Tcpipe's form). */
  targetPorts: number[];
  maxUnauthenticated: number;
  maxClients: number;
  maxSessionsPerClient: number;
  /** `--proxy-protocol`: each link connection begins with a load balancer's PROXY v2 header naming the client. */
  proxyProtocol: boolean;
  /** `--bootstrap`: started by `cproxy --ssh` for one client (bootstrap.ts); null: a standing sproxy. */
  bootstrap: BootstrapOptions | null;
}

export interface BootstrapOptions {
  /** announce: the process ssh runs, which starts `serve` and prints its port and secret; serve: the detached sproxy. */
  role: 'announce' | 'serve';
  portRange: PortRange;
  /** Read the secret from stdin (one line of hex) instead of making one. */
  secretFromStdin: boolean;
  /** Where the detached sproxy logs (its stderr). */
  logFile: string;
}

/** Parses sproxy's command line; throws UsageError/ConfigError with a one-line reason. */
export function parseSproxyArgs(args: string[]): SproxyOptions {
  return parseWithConfigFile(args, parseSproxyWords);
}

/** parseSproxyArgs without the config file: `args` are the file's words, then the command line's. */
function parseSproxyWords(args: string[]): SproxyOptions {
  const parsed = addSharedOptions(
    yargs(args)
      .scriptName('sproxy')
      .usage(
        [
          'Usage: sproxy [--listen [HOST:]PORT] [--target HOST:PORT] [options]',
          '       sproxy LPORT',
          '       sproxy --bootstrap [--port-range LOW-HIGH] [options]   (run by cproxy --ssh, through ssh)',
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
      })
      .option('allow', {
        type: 'string',
        array: true,
        describe:
          'also let clients ask for HOST:PORTS (cproxy --target, -L): a name, *.domain, an address or CIDR range ' +
          '([IPv6] in brackets) or *; PORTS a port, a range LOW-HIGH, a list of them, or *; repeatable',
        requiresArg: true,
      })
      .option('ports', {
        type: 'string',
        describe: "also let clients ask for these ports of --target's host (PORT,PORT...; cproxy --ports, as Tcpipe's -p)",
        requiresArg: true,
      })
      .option('allow-listen', {
        type: 'string',
        array: true,
        describe:
          "let clients' remote forwards (cproxy -R) listen on BIND:PORTS: an address, a CIDR range or *, and ports as for --allow " +
          '(127.0.0.1:8000-8099, *:2222); repeatable; none by default',
        requiresArg: true,
      })
      .option('bootstrap', {
        type: 'boolean',
        default: false,
        describe:
          'serve one client for cproxy --ssh: make a secret, listen on a free port of --port-range, print both on one ' +
          'line of stdout, go on in the background, and exit once the client has closed or stayed away for --resume-window',
      })
      .option('port-range', {
        type: 'string',
        describe: `with --bootstrap: listen on the first free port of LOW-HIGH (default ${formatPortRange(DEFAULT_BOOTSTRAP_PORT_RANGE)})`,
        requiresArg: true,
      })
      .option('secret-stdin', {
        type: 'boolean',
        default: false,
        describe: 'with --bootstrap: read the secret (its first line) from stdin instead of making one',
      })
      .option('log-file', {
        type: 'string',
        describe: `with --bootstrap: where the background sproxy logs (default ${defaultBootstrapLogFile()})`,
        requiresArg: true,
      })
      // The background half of --bootstrap, started by the first half: not for people.
      .option('bootstrap-child', { type: 'boolean', default: false, hidden: true })
      .option('insecure', {
        type: 'boolean',
        default: false,
        describe: 'allow a plain, unauthenticated link on a non-loopback address',
      })
      .option('proxy-protocol', {
        type: 'boolean',
        default: false,
        describe:
          'behind a load balancer (HAProxy send-proxy-v2): every link connection must begin with a PROXY protocol v2 ' +
          'header, whose client address sproxy logs; a connection without one is refused',
      })
      .option('max-unauthenticated', {
        type: 'string',
        default: '128',
        describe: 'connections that have not yet authenticated, at most; more are refused',
        requiresArg: true,
      })
      .option('max-clients', { type: 'string', default: '1024', describe: 'clients held at once, at most', requiresArg: true })
      .option('max-sessions-per-client', {
        type: 'string',
        default: '1024',
        describe: 'sessions one client may hold open at once',
        requiresArg: true,
      }),
  )
    .example('sproxy --secret-file /etc/eternal-tcp.secret', 'listen on 0.0.0.0:6200, sessions go to the telnetd on 127.0.0.1:23')
    .example('sproxy --secret-file /etc/eternal-tcp.secret --target 127.0.0.1:22', 'carry ssh instead')
    .example('sproxy 6200 --insecure', 'the original programs\' form, with their plain link')
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
  const bootstrap = readBootstrapOptions(parsed);
  if (bootstrap !== null) {
    if (parsed['secret-file'] !== undefined) throw new UsageError('--bootstrap makes its own secret (or reads it with --secret-stdin): no --secret-file');
    if (parsed.listen !== undefined || parsed.lport !== undefined) throw new UsageError('--bootstrap listens on a port of --port-range: no --listen or LPORT');
    listen = BOOTSTRAP_LISTEN;
  }
  const shared = readSharedOptions(parsed);
  // A bootstrap sproxy reaches back to the sshd that started it, unless told otherwise.
  const defaultTarget = bootstrap === null ? SPROXY_DEFAULT_TARGET : (sshServerAddress(process.env) ?? BOOTSTRAP_FALLBACK_TARGET);
  const target = parsed.target === undefined ? defaultTarget : parseHostPort(parsed.target, '--target');
  if (bootstrap === null && shared.secret === null && !parsed.insecure && !isLoopback(listen.host)) {
    throw new UsageError(
      `refusing to listen on ${formatHostPort(listen)} without a shared secret: anyone who reaches it could open ` +
        'sessions to the target and read them; give --secret-file FILE, or --insecure to accept that',
    );
  }
  return {
    ...shared,
    listen,
    target,
    allowRules: (parsed.allow ?? []).map((text) => parseTargetRule(String(text))),
    targetPorts: parsed.ports === undefined ? [] : parsed.ports.split(',').map((port) => parsePort(port.trim(), '--ports')),
    allowListenRules: (parsed['allow-listen'] ?? []).map((text) => parseTargetRule(String(text), '--allow-listen')),
    maxUnauthenticated: parsePositiveInteger(parsed['max-unauthenticated'], 'max-unauthenticated', 1, 1_000_000),
    // A bootstrap sproxy serves the one client that asked for it.
    maxClients: bootstrap === null ? parsePositiveInteger(parsed['max-clients'], 'max-clients', 1, 1_000_000) : 1,
    maxSessionsPerClient: parsePositiveInteger(parsed['max-sessions-per-client'], 'max-sessions-per-client', 1, 1_000_000),
    proxyProtocol: parsed['proxy-protocol'],
    bootstrap,
  };
}

/** Where a bootstrap sproxy listens: every IPv4 address, on a port of its range. */
const BOOTSTRAP_LISTEN: HostPort = { host: '0.0.0.0', port: 0 };
/** A bootstrap sproxy's target when the environment does not say which sshd started it. */
const BOOTSTRAP_FALLBACK_TARGET: HostPort = { host: '127.0.0.1', port: 22 };

function readBootstrapOptions(parsed: {
  bootstrap: boolean;
  'bootstrap-child': boolean;
  'port-range'?: string | undefined;
  'secret-stdin': boolean;
  'log-file'?: string | undefined;
}): BootstrapOptions | null {
  if (!parsed.bootstrap && !parsed['bootstrap-child']) {
    for (const flag of ['port-range', 'log-file'] as const) if (parsed[flag] !== undefined) throw new UsageError(`--${flag} goes with --bootstrap`);
    if (parsed['secret-stdin']) throw new UsageError('--secret-stdin goes with --bootstrap');
    return null;
  }
  return {
    role: parsed['bootstrap-child'] ? 'serve' : 'announce',
    portRange: parsed['port-range'] === undefined ? DEFAULT_BOOTSTRAP_PORT_RANGE : parsePortRange(parsed['port-range']),
    secretFromStdin: parsed['secret-stdin'],
    logFile: parsed['log-file'] ?? defaultBootstrapLogFile(),
  };
}

/** Loopback addresses reach only this machine: a plain link there exposes nothing. */
function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}
