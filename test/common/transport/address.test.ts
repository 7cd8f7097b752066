import { describe, expect, it } from 'vitest';
import { formatHostPort, parseHostPort, parsePort } from '../../../common/transport/address.js';
import { ConfigError } from '../../../common/support/errors.js';
import { expectEternalError } from '../../helpers/expect-error.js';

function expectConfigError(fn: () => unknown, message: string): void {
  expectEternalError(fn, ConfigError, 'ETCP_ERR_CONFIG', message);
}

describe('parsePort', () => {
  it.each([
    ['1', 1],
    ['23', 23],
    ['5200', 5200],
    ['65535', 65535],
    ['00080', 80],
  ])('parses %s', (text, port) => {
    expect(parsePort(text, '--port')).toBe(port);
  });

  it('accepts 0 only when allowed', () => {
    expect(parsePort('0', '--listen', true)).toBe(0);
    expectConfigError(() => parsePort('0', '--listen'), '--listen: port 0 is out of range');
  });

  it.each(['65536', '99999'])('rejects %s as out of range', (text) => {
    expectConfigError(() => parsePort(text, '--port'), `--port: port ${Number(text)} is out of range`);
  });

  it.each(['', 'http', '-1', '1.5', '123456', ' 80', '0x50', '8O'])('rejects %j as not a port number', (text) => {
    expectConfigError(() => parsePort(text, '--port'), `--port: "${text}" is not a port number`);
  });
});

describe('parseHostPort', () => {
  it('parses HOST:PORT', () => {
    expect(parseHostPort('127.0.0.1:6200', '--connect')).toEqual({ host: '127.0.0.1', port: 6200 });
    expect(parseHostPort('example.org:23', '--target')).toEqual({ host: 'example.org', port: 23 });
    expect(parseHostPort('  localhost:5200  ', '--listen')).toEqual({ host: 'localhost', port: 5200 });
  });

  it('parses a bare PORT with the default host', () => {
    expect(parseHostPort('5200', '--listen', '127.0.0.1')).toEqual({ host: '127.0.0.1', port: 5200 });
    expect(parseHostPort('0', '--listen', '0.0.0.0', true)).toEqual({ host: '0.0.0.0', port: 0 });
  });

  it('parses [IPV6]:PORT', () => {
    expect(parseHostPort('[::1]:6200', '--connect')).toEqual({ host: '::1', port: 6200 });
    expect(parseHostPort('[fe80::1%eth0]:23', '--target')).toEqual({ host: 'fe80::1%eth0', port: 23 });
    expect(parseHostPort('[::]:0', '--listen', undefined, true)).toEqual({ host: '::', port: 0 });
  });

  it('rejects a bare PORT without a default host', () => {
    expectConfigError(() => parseHostPort('5200', '--connect'), '--connect: "5200" must be HOST:PORT');
  });

  it('rejects an empty host', () => {
    expectConfigError(
      () => parseHostPort(':5200', '--connect'),
      '--connect: ":5200" must be HOST:PORT (write IPv6 addresses as [ADDR]:PORT)',
    );
  });

  it('rejects an IPv6 address without brackets', () => {
    expectConfigError(
      () => parseHostPort('::1:6200', '--connect'),
      '--connect: "::1:6200" must be HOST:PORT (write IPv6 addresses as [ADDR]:PORT)',
    );
  });

  it('rejects a bad port', () => {
    expectConfigError(() => parseHostPort('localhost:', '--connect'), '--connect: "" is not a port number');
    expectConfigError(() => parseHostPort('localhost:http', '--connect'), '--connect: "http" is not a port number');
    expectConfigError(() => parseHostPort('http', '--listen', '127.0.0.1'), '--listen: "http" is not a port number');
  });

  it('rejects a port out of range', () => {
    expectConfigError(() => parseHostPort('localhost:65536', '--connect'), '--connect: port 65536 is out of range');
    expectConfigError(() => parseHostPort('localhost:0', '--connect'), '--connect: port 0 is out of range');
    expectConfigError(() => parseHostPort('[::1]:70000', '--connect'), '--connect: port 70000 is out of range');
    expectConfigError(() => parseHostPort('99999', '--listen', '127.0.0.1'), '--listen: port 99999 is out of range');
  });
});

describe('formatHostPort', () => {
  it('brackets IPv6 addresses and round-trips through parseHostPort', () => {
    for (const address of [
      { host: '127.0.0.1', port: 5200 },
      { host: '::1', port: 6200 },
      { host: 'example.org', port: 23 },
    ]) {
      expect(parseHostPort(formatHostPort(address), 'x')).toEqual(address);
    }
    expect(formatHostPort({ host: '::1', port: 6200 })).toBe('[::1]:6200');
    expect(formatHostPort({ host: 'localhost', port: 1 })).toBe('localhost:1');
  });
});
