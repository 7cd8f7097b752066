import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { UsageError } from '../../common/ops/cli-options.js';
import { ConfigError } from '../../common/support/errors.js';
import { parseSproxyArgs } from '../../sproxy/cli.js';

afterEach(() => {
  vi.unstubAllEnvs();
});

describe('sproxy command line', () => {
  it('defaults to 0.0.0.0:6200 and the telnetd on 127.0.0.1:23', () => {
    const options = parseSproxyArgs(['--insecure']);
    expect(options.listen).toEqual({ host: '0.0.0.0', port: 6200 });
    expect(options.target).toEqual({ host: '127.0.0.1', port: 23 });
    expect(options.resumeWindowMs).toBe(86_400_000);
    expect(options.windowBytes).toBe(2 * 1024 * 1024);
    expect(parseSproxyArgs(['--insecure', '--window', '1024']).windowBytes).toBe(1024 * 1024);
  });

  it('lets windows grow to --max-window (by default 16 MiB, or --window if larger) within --send-budget, and says which flag is wrong', () => {
    const defaults = parseSproxyArgs(['--insecure']);
    expect(defaults.maxWindowBytes).toBeUndefined(); // the engine's default, or the window if larger
    expect(defaults.sendBudgetBytes).toBe(128 * 1024 * 1024);
    const set = parseSproxyArgs(['--insecure', '--window', '512', '--max-window', '8192', '--send-budget', '64']);
    expect([set.windowBytes, set.maxWindowBytes, set.sendBudgetBytes]).toEqual([512 * 1024, 8 * 1024 * 1024, 64 * 1024 * 1024]);
    expect(() => parseSproxyArgs(['--insecure', '--window', '4096', '--max-window', '2048'])).toThrow(
      new ConfigError('--max-window (2048) must be at least --window (4096)'),
    );
    expect(() => parseSproxyArgs(['--insecure', '--send-budget', '0'])).toThrow('--send-budget must be a whole number from 1 to 1048576, got "0"');
  });

  it('takes flags and the original positional form: sproxy LPORT', () => {
    expect(parseSproxyArgs(['--listen', '127.0.0.1:7200', '--target', '127.0.0.1:22']).target).toEqual({
      host: '127.0.0.1',
      port: 22,
    });
    expect(parseSproxyArgs(['6201', '--insecure']).listen).toEqual({ host: '0.0.0.0', port: 6201 });
  });

  it('refuses a plain link on a non-loopback address, and says why', () => {
    vi.stubEnv('ETERNAL_TCP_SECRET', '');
    vi.stubEnv('ETERNAL_TCP_SECRET_FILE', '');
    expect(() => parseSproxyArgs([])).toThrow(
      'refusing to listen on 0.0.0.0:6200 without a shared secret: anyone who reaches it could open sessions to the ' +
        'target and read them; give --secret-file FILE, or --insecure to accept that',
    );
    expect(() => parseSproxyArgs(['--listen', '10.1.2.3:6200'])).toThrow(UsageError);
    // Loopback reaches only this machine: no secret needed there.
    expect(parseSproxyArgs(['--listen', '127.0.0.1:6200']).secret).toBeNull();
    expect(parseSproxyArgs(['--listen', '[::1]:6200']).secret).toBeNull();
  });

  it('reads the secret from --secret-file, ETERNAL_TCP_SECRET_FILE or ETERNAL_TCP_SECRET, without the newline', () => {
    const dir = mkdtempSync(join(tmpdir(), 'etcp-secret-'));
    try {
      const file = join(dir, 'secret');
      writeFileSync(file, 'correct horse battery staple\n');
      expect(parseSproxyArgs(['--secret-file', file]).secret?.toString()).toBe('correct horse battery staple');
      vi.stubEnv('ETERNAL_TCP_SECRET_FILE', file);
      expect(parseSproxyArgs([]).secret?.toString()).toBe('correct horse battery staple');
      vi.stubEnv('ETERNAL_TCP_SECRET_FILE', '');
      vi.stubEnv('ETERNAL_TCP_SECRET', 'another secret of enough length');
      expect(parseSproxyArgs([]).secret?.toString()).toBe('another secret of enough length');
      writeFileSync(file, 'short\n');
      expect(() => parseSproxyArgs(['--secret-file', file])).toThrow(`the secret from ${file} is 5 bytes; at least 16 are needed`);
      expect(() => parseSproxyArgs(['--secret-file', join(dir, 'missing')])).toThrow(
        `cannot read the secret file ${join(dir, 'missing')}: ENOENT`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('gives the warning for a secret file group or others may read, from its mode; none for 0600 or an inline secret', () => {
    const dir = mkdtempSync(join(tmpdir(), 'etcp-secret-'));
    try {
      const file = join(dir, 'secret');
      writeFileSync(file, 'correct horse battery staple\n');
      chmodSync(file, 0o640);
      expect(parseSproxyArgs(['--secret-file', file]).secretFileWarning).toEqual({ file, mode: '0640', fix: `chmod 600 ${file}` });
      vi.stubEnv('ETERNAL_TCP_SECRET_FILE', file);
      expect(parseSproxyArgs([]).secretFileWarning?.mode).toBe('0640');
      chmodSync(file, 0o600);
      expect(parseSproxyArgs(['--secret-file', file]).secretFileWarning).toBeNull();
      vi.stubEnv('ETERNAL_TCP_SECRET_FILE', '');
      vi.stubEnv('ETERNAL_TCP_SECRET', 'another secret of enough length');
      expect(parseSproxyArgs([]).secretFileWarning).toBeNull();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keeps a binary secret file byte for byte (only white space at the ends is dropped)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'etcp-secret-'));
    try {
      const file = join(dir, 'secret');
      // Not valid UTF-8: read as text, these would all collapse into the same replacement character.
      const bytes = Buffer.from([0xff, 0xfe, 0x80, 0x81, 0xc0, 0xc1, 0xf5, 0xf8, 0xfa, 0xfb, 0xfc, 0xfd, 0x90, 0x91, 0x92, 0x93, 0x94]);
      writeFileSync(file, Buffer.concat([bytes, Buffer.from('\n')]));
      expect(parseSproxyArgs(['--secret-file', file]).secret?.equals(bytes)).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('takes --allow (repeatable) and the limits', () => {
    const options = parseSproxyArgs([
      '--listen', '127.0.0.1:6200', '--allow', '127.0.0.1:22', '--allow', 'db.internal:5432',
      '--max-unauthenticated', '10', '--max-clients', '20', '--max-sessions-per-client', '30',
    ]);
    expect(options.allowRules.map((rule) => rule.text)).toEqual(['127.0.0.1:22', 'db.internal:5432']);
    expect([options.maxUnauthenticated, options.maxClients, options.maxSessionsPerClient]).toEqual([10, 20, 30]);
  });

  it.each([
    [['--target', '22'], ConfigError, '--target: "22" must be HOST:PORT'],
    [['--allow', 'nohost', '--insecure'], ConfigError, '--allow nohost: expected HOST:PORTS (a name, *.domain, an address or CIDR range, or *; IPv6 in brackets)'],
    [['6201', '--listen', '6202'], UsageError, 'give either LPORT or --listen, not both'],
    [['6201', '6202'], UsageError, 'Unknown argument: 6202'],
    [['--max-clients', '0', '--insecure'], ConfigError, '--max-clients must be a whole number from 1 to 1000000, got "0"'],
    [['--resume-window', '0'], ConfigError, '--resume-window must be a whole number from 1 to 2147483, got "0"'],
    [['--bootstrap', '--listen', '0.0.0.0:6200'], UsageError, '--bootstrap listens on a port of --port-range: no --listen or LPORT'],
    [['--bootstrap', '--secret-file', '/s'], UsageError, '--bootstrap makes its own secret (or reads it with --secret-stdin): no --secret-file'],
    [['--bootstrap', '--port-range', '10-5'], ConfigError, '--port-range must be LOW-HIGH, ports from 1 to 65535 with LOW <= HIGH, got "10-5"'],
    [['--port-range', '2000-2010'], UsageError, '--port-range goes with --bootstrap'],
    [['--secret-stdin'], UsageError, '--secret-stdin goes with --bootstrap'],
  ])('rejects %j with a one-line reason', (args, errorClass, message) => {
    let caught: unknown;
    try {
      parseSproxyArgs(args);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(errorClass);
    expect((caught as Error).message).toBe(message);
  });

  it('--bootstrap: one client, a port of the range, and the sshd that started it as the target', () => {
    vi.stubEnv('SSH_CONNECTION', '10.0.0.9 50000 10.0.0.1 2222');
    try {
      const options = parseSproxyArgs(['--bootstrap', '--port-range', '3000-3005']);
      expect(options.bootstrap).toMatchObject({ role: 'announce', portRange: { low: 3000, high: 3005 }, secretFromStdin: false });
      expect(options.target).toEqual({ host: '10.0.0.1', port: 2222 });
      expect(options.maxClients).toBe(1);
      expect(options.listen.host).toBe('0.0.0.0');
      expect(parseSproxyArgs(['--bootstrap', '--bootstrap-child']).bootstrap?.role).toBe('serve');
      expect(parseSproxyArgs(['--bootstrap', '--target', '127.0.0.1:23']).target).toEqual({ host: '127.0.0.1', port: 23 });
    } finally {
      vi.unstubAllEnvs();
    }
    vi.stubEnv('SSH_CONNECTION', '');
    try {
      expect(parseSproxyArgs(['--bootstrap']).target).toEqual({ host: '127.0.0.1', port: 22 });
    } finally {
      vi.unstubAllEnvs();
    }
    expect(parseSproxyArgs(['--insecure']).bootstrap).toBeNull();
  });
});
