import yargs from 'yargs';
import { formatHostPort, parseHostPort, parsePort, type HostPort } from '../common/transport/address.js';
import { DEFAULT_CLIENT_CONFIG } from '../common/endpoints/config.js';
import { ConfigError } from '../common/support/errors.js';
import {
  checkDistinctListeners,
  checkOpenTarget,
  parseDynamicForward,
  parseLocalForward,
  parsePortList,
  parseRemoteForward,
  type DynamicForward,
  type LocalForward,
  type RemoteForward,
} from '../common/forwarding/forward-spec.js';
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
import { DEFAULT_BOOTSTRAP_PORT_RANGE, formatPortRange, parsePortRange, type PortRange } from '../common/ops/bootstrap-line.js';

export const CPROXY_DEFAULT_LISTEN: HostPort = { host: '127.0.0.1', port: 5200 };
export const CPROXY_DEFAULT_SERVER: HostPort = { host: '127.0.0.1', port: 6200 };

export interface CproxyOptions extends SharedCliOptions {
  /**
   * What cproxy listens on, each with the target it asks sproxy for: the forward of --listen and
   * --target (or of the positional form, or the default), then each -L in order, then each of --ports. Empty only with -D or -R alone.
   */
  forwards: LocalForward[];
  /** Each -D: a SOCKS5 server. With -D alone (no --listen, --target or -L), forwards is empty. */
  dynamicForwards: DynamicForward[];
  /** Each -R, in order. */
  remoteForwards: RemoteForward[];
  server: HostPort;
  connectTimeoutMs: number;
  connectStaggerMs: number;
  /** How often the host's addresses are looked at; 0: never. */
  addressPollMs: number;
  /** Give each link a second connection for small sessions. */
  expressLane: boolean;
  /** `--ssh`: start sproxy on the host through ssh first (ssh-bootstrap.ts); null: --server runs already. */
  ssh: SshBootstrap | null;
}

export interface SshBootstrap {
  /** ssh's destination, [USER@]HOST (or a Host of ~/.ssh/config). */
  destination: string;
  /** Each --ssh-option, passed to ssh as `-o OPT`. */
  sshOptions: string[];
  /** How the remote shell starts sproxy (`sproxy` on its PATH by default). */
  remoteCommand: string;
  /** The ports the remote sproxy may listen on. */
  portRange: PortRange;
}

export const DEFAULT_REMOTE_COMMAND = 'sproxy';

/** Parses cproxy's command line; throws UsageError/ConfigError with a one-line reason. */
export function parseCproxyArgs(args: string[]): CproxyOptions {
  return parseWithConfigFile(args, parseCproxyWords);
}

/** parseCproxyArgs without the config file: `args` are the file's words, then the command line's. */
function parseCproxyWords(args: string[]): CproxyOptions {
  const parsed = addSharedOptions(
    yargs(args)
      .scriptName('cproxy')
      .usage(
        [
          'Usage: cproxy [--listen [HOST:]PORT] [--server HOST:PORT] [options]',
          '       cproxy --server HOST:PORT -L [BIND:]PORT:HOST:HOSTPORT [-L ...] [-D [BIND:]PORT] [options]',
          '       cproxy --ssh [USER@]HOST [-L ...] [-R ...] [-D ...] [options]',
          '       cproxy LPORT SPROXY_HOST SPROXY_PORT',
          '',
          'Accepts your application\'s TCP connections and carries them to sproxy over one link that',
          'survives network loss and address changes: sessions pause while the link is down and resume',
          'where they stopped.',
        ].join('\n'),
      )
      .command('$0 [lport] [sproxyHost] [sproxyPort]', false)
      .positional('lport', { type: 'string', describe: 'port to listen on (original form)' })
      .positional('sproxyHost', { type: 'string', describe: 'sproxy host (original form)' })
      .positional('sproxyPort', { type: 'string', describe: 'sproxy port (original form)' })
      .option('listen', {
        type: 'string',
        describe: `accept user connections on [HOST:]PORT (default ${formatHostPort(CPROXY_DEFAULT_LISTEN)})`,
        requiresArg: true,
      })
      .option('server', {
        type: 'string',
        describe: `sproxy's address HOST:PORT (default ${formatHostPort(CPROXY_DEFAULT_SERVER)})`,
        requiresArg: true,
      })
      .option('ssh', {
        type: 'string',
        describe:
          'start sproxy on HOST through ssh (your ssh: its config, agent and prompts), with a secret made for this ' +
          "run only, then link to it; with no forward given, --listen's port carries to HOST's sshd",
        requiresArg: true,
      })
      .option('ssh-option', {
        type: 'string',
        array: true,
        describe: 'with --ssh: give ssh -o OPT (Port=2222, IdentityFile=~/.ssh/work, ProxyJump=bastion...); repeatable',
        requiresArg: true,
      })
      .option('remote-command', {
        type: 'string',
        describe: `with --ssh: the command that runs sproxy on HOST (default ${DEFAULT_REMOTE_COMMAND}; e.g. "npx -y -p eternal-tcp sproxy")`,
        requiresArg: true,
      })
      .option('port-range', {
        type: 'string',
        describe: `with --ssh: the ports sproxy may listen on, LOW-HIGH (default ${formatPortRange(DEFAULT_BOOTSTRAP_PORT_RANGE)}; open them in HOST's firewall)`,
        requiresArg: true,
      })
      .option('target', {
        type: 'string',
        describe: "ask sproxy to connect sessions to HOST:PORT (one of its --allow) instead of its default",
        requiresArg: true,
      })
      .option('local-forward', {
        alias: 'L',
        type: 'string',
        array: true,
        describe:
          'listen on [BIND:]PORT (127.0.0.1 if no BIND; * for every interface) and carry each connection to ' +
          "HOST:HOSTPORT from sproxy's side (one of its --allow), as ssh -L; repeatable, all over the one link",
        requiresArg: true,
      })
      .option('ports', {
        type: 'string',
        describe:
          "as Tcpipe's -p: listen on each of PORT,PORT... ([BIND:] first: 127.0.0.1 if none) and carry each connection to the " +
          "same port on sproxy's target host (one of its --ports)",
        requiresArg: true,
      })
      .option('remote-forward', {
        alias: 'R',
        type: 'string',
        array: true,
        describe:
          "have sproxy listen on [BIND:]PORT on its side (its 127.0.0.1 if no BIND; one of its --allow-listen) and carry each " +
          'connection back to HOST:HOSTPORT from here, as ssh -R; repeatable, all over the one link, through its outages',
        requiresArg: true,
      })
      .option('dynamic-forward', {
        alias: 'D',
        type: 'string',
        array: true,
        describe:
          'run a SOCKS5 server on [BIND:]PORT (127.0.0.1 if no BIND), as ssh -D: each CONNECT becomes a session to its ' +
          "destination from sproxy's side (one of its --allow); repeatable, all over the one link",
        requiresArg: true,
      })
      .option('connect-timeout', {
        type: 'string',
        default: '2000',
        describe: 'abandon a connect attempt to sproxy after MS milliseconds',
        requiresArg: true,
      })
      .option('connect-stagger', {
        type: 'string',
        describe:
          'while a connect attempt to sproxy is pending, start another every MS milliseconds ' +
          `(default ${DEFAULT_CLIENT_CONFIG.connectStaggerMs}, or --connect-timeout if shorter)`,
        requiresArg: true,
      })
      .option('address-poll', {
        type: 'string',
        default: String(DEFAULT_CLIENT_CONFIG.addressPollMs),
        describe:
          "look at the host's addresses every MS milliseconds: when the link's own address goes, the link is " +
          'dead at once and cproxy dials again from the new one (0: never; the dead-link timeout notices instead)',
        requiresArg: true,
      })
      .option('express-lane', {
        type: 'boolean',
        default: DEFAULT_CLIENT_CONFIG.expressLane,
        describe:
          'give the link a second TCP connection for small sessions, so that keystrokes never wait behind a ' +
          'bulk transfer (--no-express-lane: one connection carries everything)',
      }),
  )
    .example('cproxy', 'listen on 127.0.0.1:5200, link to sproxy on 127.0.0.1:6200')
    .example('cproxy --server vps.example.net:6200 --secret-file ~/.eternal-tcp.secret', 'then: telnet localhost 5200')
    .example('cproxy --ssh me@vps.example.net', 'then: ssh -p 5200 localhost (a shell that survives roaming)')
    .example('cproxy 5200 vps.example.net 6200', 'the same, in the original programs\' form')
    .example('cproxy --server vps:6200 -L 5200:localhost:23 -L 2222:localhost:22', 'telnet and ssh over one link')
    .example('cproxy --server vps:6200 -D 1080', 'then: curl --socks5-hostname localhost:1080 http://intranet/')
    .strict()
    .fail(failWithUsageError)
    .version(packageVersion())
    .help()
    .alias('h', 'help')
    .alias('V', 'version')
    .wrap(100)
    .parseSync();

  const positional = [parsed.lport, parsed.sproxyHost, parsed.sproxyPort].filter((value) => value !== undefined);
  const localForwards = (parsed['local-forward'] ?? []).map((text) => parseLocalForward(String(text)));
  const dynamicForwards = (parsed['dynamic-forward'] ?? []).map((text) => parseDynamicForward(String(text)));
  const remoteForwards = (parsed['remote-forward'] ?? []).map((text) => parseRemoteForward(String(text)));
  const portForwards = parsed.ports === undefined ? [] : parsePortList(parsed.ports);
  let listen = CPROXY_DEFAULT_LISTEN;
  let server = CPROXY_DEFAULT_SERVER;
  if (positional.length > 0) {
    if (positional.length !== 3) throw new UsageError('the positional form is: cproxy LPORT SPROXY_HOST SPROXY_PORT');
    if (parsed.listen !== undefined || parsed.server !== undefined) {
      throw new UsageError('give either LPORT SPROXY_HOST SPROXY_PORT or --listen/--server, not both');
    }
    listen = { host: CPROXY_DEFAULT_LISTEN.host, port: parsePort(String(parsed.lport), 'LPORT') };
    server = { host: String(parsed.sproxyHost), port: parsePort(String(parsed.sproxyPort), 'SPROXY_PORT') };
  } else {
    if (parsed.listen !== undefined) listen = parseHostPort(parsed.listen, '--listen', CPROXY_DEFAULT_LISTEN.host, true);
    if (parsed.server !== undefined) server = parseHostPort(parsed.server, '--server');
  }
  const ssh = readSshBootstrap(parsed);
  if (ssh !== null) {
    if (positional.length > 0 || parsed.server !== undefined) throw new UsageError('--ssh starts the sproxy to link to: no --server or SPROXY_HOST SPROXY_PORT');
    if (parsed['secret-file'] !== undefined) throw new UsageError('--ssh makes a secret for this run: no --secret-file');
  }
  const connectTimeoutMs = parsePositiveInteger(parsed['connect-timeout'], 'connect-timeout');
  const connectStaggerMs =
    parsed['connect-stagger'] === undefined
      ? Math.min(DEFAULT_CLIENT_CONFIG.connectStaggerMs, connectTimeoutMs)
      : parsePositiveInteger(parsed['connect-stagger'], 'connect-stagger');
  if (connectStaggerMs > connectTimeoutMs) {
    throw new ConfigError(
      `--connect-stagger (${connectStaggerMs}) must not be longer than --connect-timeout (${connectTimeoutMs})`,
    );
  }
  // --listen's forward (the default one) when it is asked for, or when there is no -L.
  const target = parsed.target === undefined ? null : checkOpenTarget(parseHostPort(parsed.target, '--target'), '--target');
  const ownForward = positional.length > 0 || parsed.listen !== undefined || parsed.target !== undefined || [...localForwards, ...portForwards, ...dynamicForwards, ...remoteForwards].length === 0;
  const forwards = [...(ownForward ? [{ listen, target }] : []), ...localForwards, ...portForwards];
  checkDistinctListeners([...forwards, ...dynamicForwards]);
  return {
    ...readSharedOptions(parsed),
    forwards,
    dynamicForwards,
    remoteForwards,
    server,
    connectTimeoutMs,
    connectStaggerMs,
    addressPollMs: parsePositiveInteger(parsed['address-poll'], 'address-poll', 0),
    expressLane: parsed['express-lane'],
    ssh,
  };
}

function readSshBootstrap(parsed: {
  ssh?: string | undefined;
  'ssh-option'?: Array<string | number> | undefined;
  'remote-command'?: string | undefined;
  'port-range'?: string | undefined;
}): SshBootstrap | null {
  if (parsed.ssh === undefined) {
    for (const flag of ['ssh-option', 'remote-command', 'port-range'] as const) if (parsed[flag] !== undefined) throw new UsageError(`--${flag} goes with --ssh`);
    return null;
  }
  const destination = parsed.ssh.trim();
  // ssh would read a destination that starts with '-' as one of its options.
  if (destination === '' || destination.startsWith('-') || /\s/.test(destination)) throw new UsageError(`--ssh takes [USER@]HOST, got "${parsed.ssh}"`);
  const remoteCommand = (parsed['remote-command'] ?? DEFAULT_REMOTE_COMMAND).trim();
  if (remoteCommand === '') throw new UsageError('--remote-command must not be empty');
  return {
    destination,
    sshOptions: (parsed['ssh-option'] ?? []).map(String),
    remoteCommand,
    portRange: parsed['port-range'] === undefined ? DEFAULT_BOOTSTRAP_PORT_RANGE : parsePortRange(parsed['port-range']),
  };
}
