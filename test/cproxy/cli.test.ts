import { describe, expect, it } from 'vitest';
import { UsageError } from '../../common/ops/cli-options.js';
import { ConfigError } from '../../common/support/errors.js';
import { parseCproxyArgs } from '../../cproxy/cli.js';

describe('cproxy command line', () => {
  it('defaults to 127.0.0.1:5200 and sproxy on 127.0.0.1:6200 with the design timings', () => {
    const options = parseCproxyArgs([]);
    expect(options.forwards).toHaveLength(1);
    expect(options.forwards[0]?.listen).toEqual({ host: '127.0.0.1', port: 5200 });
    expect(options.server).toEqual({ host: '127.0.0.1', port: 6200 });
    expect(options.heartbeatIntervalMs).toBe(1000);
    expect(options.deadAfterMs).toBe(3000);
    expect(options.resumeWindowMs).toBe(86_400_000);
    expect(options.connectTimeoutMs).toBe(2000);
    expect(options.connectStaggerMs).toBe(250);
    expect(options.addressPollMs).toBe(200);
    expect(parseCproxyArgs(['--address-poll', '0']).addressPollMs).toBe(0);
    expect(options.expressLane).toBe(true);
    expect(parseCproxyArgs(['--no-express-lane']).expressLane).toBe(false);
    expect(options.windowBytes).toBe(2 * 1024 * 1024);
    expect(options.logLevel).toBe('info');
  });

  it('takes flags', () => {
    const options = parseCproxyArgs([
      '--listen', '0.0.0.0:7000', '--server', 'sproxy.example:7001', '--heartbeat-interval', '250',
      '--dead-after', '900', '--resume-window', '60', '--connect-timeout', '500', '--connect-stagger', '250',
      '--window', '512', '--log-level', 'debug',
    ]);
    expect(options.forwards).toHaveLength(1);
    expect(options.forwards[0]?.listen).toEqual({ host: '0.0.0.0', port: 7000 });
    expect(options.server).toEqual({ host: 'sproxy.example', port: 7001 });
    expect(options.heartbeatIntervalMs).toBe(250);
    expect(options.deadAfterMs).toBe(900);
    expect(options.resumeWindowMs).toBe(60_000);
    expect(options.connectTimeoutMs).toBe(500);
    expect(options.connectStaggerMs).toBe(250);
    expect(options.windowBytes).toBe(512 * 1024);
    expect(options.logLevel).toBe('debug');
  });

  it('serves metrics only when --metrics is given: a port alone on 127.0.0.1, port 0 for any free one, a bad address in one line', () => {
    expect(parseCproxyArgs([]).metrics).toBeNull();
    expect(parseCproxyArgs(['--metrics', '9100']).metrics).toEqual({ host: '127.0.0.1', port: 9100 });
    expect(parseCproxyArgs(['--metrics', '0']).metrics).toEqual({ host: '127.0.0.1', port: 0 });
    expect(parseCproxyArgs(['--metrics', '0.0.0.0:9100']).metrics).toEqual({ host: '0.0.0.0', port: 9100 });
    expect(parseCproxyArgs(['--metrics', '[::1]:9100']).metrics).toEqual({ host: '::1', port: 9100 });
    expect(() => parseCproxyArgs(['--metrics', 'lots'])).toThrow(ConfigError);
    expect(() => parseCproxyArgs(['--metrics', 'lots'])).toThrow('--metrics: "lots" is not a port number');
    expect(() => parseCproxyArgs(['--metrics', '70000'])).toThrow('--metrics: port 70000 is out of range');
    expect(() => parseCproxyArgs(['--metrics'])).toThrow(UsageError);
  });

  it('lowers the default --connect-stagger to a shorter --connect-timeout', () => {
    expect(parseCproxyArgs(['--connect-timeout', '200']).connectStaggerMs).toBe(200);
    expect(parseCproxyArgs(['--connect-timeout', '400']).connectStaggerMs).toBe(250);
  });

  it('takes many -L forwards over the one link, beside --listen/--target or instead of the default', () => {
    const options = parseCproxyArgs(['--server', 'vps:6200', '-L', '5200:localhost:23', '--local-forward', '*:2222:localhost:22', '-L', '[::1]:5432:[fd00::5]:5432']);
    expect(options.forwards).toEqual([
      { listen: { host: '127.0.0.1', port: 5200 }, target: { host: 'localhost', port: 23 } },
      { listen: { host: '0.0.0.0', port: 2222 }, target: { host: 'localhost', port: 22 } },
      { listen: { host: '::1', port: 5432 }, target: { host: 'fd00::5', port: 5432 } },
    ]);
    // --listen's forward (sproxy's default target) comes first when asked for.
    expect(parseCproxyArgs(['--listen', '5300', '-L', '5301:db:5432']).forwards).toEqual([
      { listen: { host: '127.0.0.1', port: 5300 }, target: null },
      { listen: { host: '127.0.0.1', port: 5301 }, target: { host: 'db', port: 5432 } },
    ]);
    expect(parseCproxyArgs(['--target', 'db:5432']).forwards).toEqual([{ listen: { host: '127.0.0.1', port: 5200 }, target: { host: 'db', port: 5432 } }]);
  });

  it('takes -D SOCKS forwards: alone they replace the default forward, beside -L they add to it', () => {
    const alone = parseCproxyArgs(['-D', '1080', '--dynamic-forward', '[::1]:1081']);
    expect(alone.forwards).toEqual([]);
    expect(alone.dynamicForwards).toEqual([{ listen: { host: '127.0.0.1', port: 1080 } }, { listen: { host: '::1', port: 1081 } }]);
    const mixed = parseCproxyArgs(['-L', '5200:db:5432', '-D', '*:1080']);
    expect(mixed.forwards).toEqual([{ listen: { host: '127.0.0.1', port: 5200 }, target: { host: 'db', port: 5432 } }]);
    expect(mixed.dynamicForwards).toEqual([{ listen: { host: '0.0.0.0', port: 1080 } }]);
    // Tcpipe's form: each port to the same port of sproxy's target host (an empty host in the OPEN).
    expect(parseCproxyArgs(['--ports', '40000,40001']).forwards).toEqual([
      { listen: { host: '127.0.0.1', port: 40000 }, target: { host: '', port: 40000 } },
      { listen: { host: '127.0.0.1', port: 40001 }, target: { host: '', port: 40001 } },
    ]);
    expect(parseCproxyArgs(['--ports', '*:40000']).forwards[0]?.listen).toEqual({ host: '0.0.0.0', port: 40000 });
    const remote = parseCproxyArgs(['-R', '8022:localhost:22', '--remote-forward', '*:8080:[::1]:80']);
    expect(remote.forwards).toEqual([]);
    expect(remote.remoteForwards).toEqual([
      { listen: { host: '127.0.0.1', port: 8022 }, target: { host: 'localhost', port: 22 } },
      { listen: { host: '0.0.0.0', port: 8080 }, target: { host: '::1', port: 80 } },
    ]);
  });

  it('takes a bare port for --listen and IPv6 in brackets', () => {
    expect(parseCproxyArgs(['--listen', '5300']).forwards[0]?.listen).toEqual({ host: '127.0.0.1', port: 5300 });
    expect(parseCproxyArgs(['--server', '[::1]:6300']).server).toEqual({ host: '::1', port: 6300 });
  });

  it('takes the original programs\' positional form: LPORT SPROXY_HOST SPROXY_PORT', () => {
    const options = parseCproxyArgs(['5201', 'far.example', '6201']);
    expect(options.forwards).toHaveLength(1);
    expect(options.forwards[0]?.listen).toEqual({ host: '127.0.0.1', port: 5201 });
    expect(options.server).toEqual({ host: 'far.example', port: 6201 });
  });

  it.each([
    [['--bogus'], UsageError, 'Unknown argument: bogus'],
    [['--listen', 'abc'], ConfigError, '--listen: "abc" is not a port number'],
    [['--server', 'nohost'], ConfigError, '--server: "nohost" must be HOST:PORT'],
    [['--listen', '70000'], ConfigError, '--listen: port 70000 is out of range'],
    [['--dead-after', 'soon'], ConfigError, '--dead-after must be a whole number from 20 to 2147483647, got "soon"'],
    [['--heartbeat-interval', '5000'], ConfigError, '--dead-after (3000) must be longer than --heartbeat-interval (5000)'],
    [['5201', 'far.example'], UsageError, 'the positional form is: cproxy LPORT SPROXY_HOST SPROXY_PORT'],
    [['5201', 'far.example', '6201', '--server', 'x:1'], UsageError, 'give either LPORT SPROXY_HOST SPROXY_PORT or --listen/--server, not both'],
    [['--server'], UsageError, 'Not enough arguments following: server'],
    [['--connect-timeout', '400', '--connect-stagger', '500'], ConfigError, '--connect-stagger (500) must not be longer than --connect-timeout (400)'],
    [['--target', `${'h'.repeat(260)}:22`], ConfigError, '--target: the target is longer than 261 bytes'],
    [['--window', '1024', '--window', '2048'], UsageError, '--window is given more than once'],
    [['-L', '5200:db'], ConfigError, '-L 5200:db: expected [BIND:]PORT:HOST:HOSTPORT (IPv6 addresses in brackets)'],
    [['-L', '5200:a:1', '-L', '5200:b:2'], ConfigError, 'two forwards listen on 127.0.0.1:5200'],
    [['--listen', '6000', '-L', '6000:b:2'], ConfigError, 'two forwards listen on 127.0.0.1:6000'],
    [['-L', '1080:b:2', '-D', '1080'], ConfigError, 'two forwards listen on 127.0.0.1:1080'],
    [['-D', '1080:x'], ConfigError, '-D 1080:x: PORT: "x" is not a port number'],
    [['-D', 'a:b:c'], ConfigError, '-D a:b:c: expected [BIND:]PORT (an IPv6 address in brackets)'],
    [['--window', '32'], ConfigError, '--window must be a whole number from 64 to 1048576, got "32"'],
    [['--ssh', 'vps', '--server', 'x:1'], UsageError, '--ssh starts the sproxy to link to: no --server or SPROXY_HOST SPROXY_PORT'],
    [['--ssh', 'vps', '--secret-file', '/s'], UsageError, '--ssh makes a secret for this run: no --secret-file'],
    [['--ssh=-oProxyCommand=x'], UsageError, '--ssh takes [USER@]HOST, got "-oProxyCommand=x"'],
    [['--ssh', 'vps', '--remote-command', ' '], UsageError, '--remote-command must not be empty'],
    [['--ssh-option', 'Port=2'], UsageError, '--ssh-option goes with --ssh'],
    [['--port-range', '2000-2001'], UsageError, '--port-range goes with --ssh'],
  ])('rejects %j with a one-line reason', (args, errorClass, message) => {
    let caught: unknown;
    try {
      parseCproxyArgs(args);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(errorClass);
    expect((caught as Error).message).toBe(message);
    expect((caught as Error).message).not.toContain('\n');
  });

  it('--ssh: the destination, its options and the remote command; the forwards as usual', () => {
    const options = parseCproxyArgs(['--ssh', 'me@vps', '--ssh-option', 'Port=2222', '-L', '5201:db:5432']);
    expect(options.ssh).toEqual({ destination: 'me@vps', sshOptions: ['Port=2222'], remoteCommand: 'sproxy', portRange: { low: 2022, high: 2122 } });
    expect(options.forwards.map((forward) => forward.target)).toEqual([{ host: 'db', port: 5432 }]);
    // No forward: --listen's, to sproxy's default (on a bootstrap sproxy, the sshd).
    expect(parseCproxyArgs(['--ssh', 'vps']).forwards).toEqual([{ listen: { host: '127.0.0.1', port: 5200 }, target: null }]);
    expect(parseCproxyArgs([]).ssh).toBeNull();
  });
});
