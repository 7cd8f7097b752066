import { describe, expect, it } from 'vitest';
import { checkDistinctListeners, parseLocalForward, splitColonFields } from '../../../common/forwarding/forward-spec.js';
import { ConfigError } from '../../../common/support/errors.js';
import { catchError, expectEternalError } from '../../helpers/expect-error.js';

describe('forward specs: -L [BIND:]PORT:HOST:HOSTPORT', () => {
  it('splits at colons, an IPv6 address in brackets being one field', () => {
    expect(splitColonFields('5200:db:5432', 'x')).toEqual(['5200', 'db', '5432']);
    expect(splitColonFields('[::1]:5200:[2001:db8::7]:22', 'x')).toEqual(['::1', '5200', '2001:db8::7', '22']);
    expect(splitColonFields(':8080:web:80', 'x')).toEqual(['', '8080', 'web', '80']);
  });

  it('takes ssh\'s forms: no bind (this host only), a bind address, * or nothing for every interface, IPv6', () => {
    expect(parseLocalForward('5200:localhost:23')).toEqual({ listen: { host: '127.0.0.1', port: 5200 }, target: { host: 'localhost', port: 23 } });
    expect(parseLocalForward('10.0.0.5:2222:bastion.internal:22')).toEqual({
      listen: { host: '10.0.0.5', port: 2222 },
      target: { host: 'bastion.internal', port: 22 },
    });
    expect(parseLocalForward('*:8080:web:80').listen).toEqual({ host: '0.0.0.0', port: 8080 });
    expect(parseLocalForward(':8080:web:80').listen).toEqual({ host: '0.0.0.0', port: 8080 });
    expect(parseLocalForward('[::1]:5432:[2001:db8::7]:5432')).toEqual({
      listen: { host: '::1', port: 5432 },
      target: { host: '2001:db8::7', port: 5432 },
    });
    expect(parseLocalForward('0:db:5432').listen.port).toBe(0); // any free port
  });

  it.each([
    ['5200', 'expected [BIND:]PORT:HOST:HOSTPORT'],
    ['5200:db', 'expected [BIND:]PORT:HOST:HOSTPORT'],
    ['a:b:c:d:e', 'expected [BIND:]PORT:HOST:HOSTPORT'],
    ['5200:db:0', 'port 0 is out of range'],
    ['70000:db:22', 'port 70000 is out of range'],
    ['5200:db:ssh', '"ssh" is not a port number'],
    ['5200::22', 'the target host is empty'],
    ['[::1:5200:db:22', 'has a "[" without its "]"'],
    ['5200:2001:db8::1:22', 'expected [BIND:]PORT:HOST:HOSTPORT'],
    ['[::1]x:5200:db:22', 'a colon must follow "]"'],
    [`5200:${'h'.repeat(300)}:22`, 'longer than 261 bytes'],
  ])('refuses %s with a one-line reason', (text, reason) => {
    const error = catchError(() => parseLocalForward(text));
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toContain(`-L ${text}`);
    expect((error as ConfigError).message).toContain(reason);
  });

  it('refuses two forwards on the same address and port, but not two on port 0', () => {
    const forwards = ['5200:a:1', '127.0.0.1:5200:b:2'].map(parseLocalForward);
    expectEternalError(() => checkDistinctListeners(forwards), ConfigError, 'ETCP_ERR_CONFIG', 'two forwards listen on 127.0.0.1:5200');
    expect(() => checkDistinctListeners(['0:a:1', '0:b:2', '5201:c:3'].map(parseLocalForward))).not.toThrow();
  });
});
