import { describe, expect, it } from 'vitest';
import { UsageError } from '../../common/cli/shared.js';
import { ConfigError } from '../../common/errors.js';
import { parseSproxyArgs } from '../../sproxy/cli.js';

describe('sproxy command line', () => {
  it('defaults to 0.0.0.0:6200 and the telnetd on 127.0.0.1:23', () => {
    const options = parseSproxyArgs([]);
    expect(options.listen).toEqual({ host: '0.0.0.0', port: 6200 });
    expect(options.target).toEqual({ host: '127.0.0.1', port: 23 });
    expect(options.resumeWindowMs).toBe(86_400_000);
  });

  it('takes flags and the original positional form: sproxy LPORT', () => {
    expect(parseSproxyArgs(['--listen', '127.0.0.1:7200', '--target', '127.0.0.1:22']).target).toEqual({
      host: '127.0.0.1',
      port: 22,
    });
    expect(parseSproxyArgs(['6201']).listen).toEqual({ host: '0.0.0.0', port: 6201 });
  });

  it.each([
    [['--target', '22'], ConfigError, '--target: "22" must be HOST:PORT'],
    [['6201', '--listen', '6202'], UsageError, 'give either LPORT or --listen, not both'],
    [['6201', '6202'], UsageError, 'Unknown argument: 6202'],
    [['--resume-window', '0'], ConfigError, '--resume-window must be a whole number from 1 to 2147483, got "0"'],
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
});
