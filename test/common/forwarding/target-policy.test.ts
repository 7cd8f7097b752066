import { describe, expect, it } from 'vitest';
import { allowingRule, parseTargetRule } from '../../../common/forwarding/target-policy.js';
import { ConfigError } from '../../../common/support/errors.js';
import { catchError } from '../../helpers/expect-error.js';

const rules = (...texts: string[]) => texts.map((text) => parseTargetRule(text));
const allows = (texts: string[], host: string, port: number): string | null => allowingRule(rules(...texts), { host, port })?.text ?? null;

describe('--allow patterns: what sproxy lets a client reach', () => {
  it('a name and a port, without regard to case or a trailing dot; nothing else', () => {
    expect(allows(['db.internal:5432'], 'db.internal', 5432)).toBe('db.internal:5432');
    expect(allows(['db.internal:5432'], 'DB.Internal.', 5432)).toBe('db.internal:5432');
    expect(allows(['db.internal:5432'], 'db.internal', 5433)).toBeNull();
    expect(allows(['db.internal:5432'], 'evil-db.internal', 5432)).toBeNull();
    expect(allows(['db.internal:5432'], 'db.internal.evil.net', 5432)).toBeNull();
  });

  it('*.domain: names under it, not the domain itself nor a name that merely ends alike', () => {
    expect(allows(['*.internal:22'], 'a.b.internal', 22)).toBe('*.internal:22');
    expect(allows(['*.internal:22'], 'internal', 22)).toBeNull();
    expect(allows(['*.internal:22'], 'notinternal', 22)).toBeNull();
    expect(allows(['*.internal:22'], '10.0.0.1', 22)).toBeNull(); // an address is not a name
  });

  it('address ranges, IPv4 and IPv6, match addresses only: a name is not resolved to be checked', () => {
    expect(allows(['10.0.0.0/8:22'], '10.200.3.4', 22)).toBe('10.0.0.0/8:22');
    expect(allows(['10.0.0.0/8:22'], '11.0.0.1', 22)).toBeNull();
    expect(allows(['10.0.0.0/8:22'], 'localhost', 22)).toBeNull();
    expect(allows(['127.0.0.1:22'], '127.0.0.1', 22)).toBe('127.0.0.1:22'); // one address
    expect(allows(['[fd00::/8]:*'], 'fd12:3456::1', 8080)).toBe('[fd00::/8]:*');
    expect(allows(['[fd00::/8]:*'], 'fe80::1', 8080)).toBeNull();
    expect(allows(['[::1]:22'], '::1', 22)).toBe('[::1]:22');
  });

  it('ports: one, ranges, lists, *; and * for any host', () => {
    const web = ['web.internal:80,443,8000-8099'];
    expect([80, 443, 8000, 8050, 8099].map((port) => allows(web, 'web.internal', port) !== null)).toEqual([true, true, true, true, true]);
    expect([81, 7999, 8100].map((port) => allows(web, 'web.internal', port) !== null)).toEqual([false, false, false]);
    expect(allows(['*:443'], 'anything.example', 443)).toBe('*:443');
    expect(allows(['*:443'], 'anything.example', 444)).toBeNull();
    expect(allows(['a:1', '*:*'], 'b', 2)).toBe('*:*'); // the first that matches
    expect(allows([], 'a', 1)).toBeNull();
  });

  it.each([
    ['db.internal', 'expected HOST:PORTS'],
    [':22', 'expected HOST:PORTS'],
    ['fd00::1:22', 'expected HOST:PORTS'],
    ['db:0', 'port 0 is out of range'],
    ['db:90-80', 'port range 90-80 goes backwards'],
    ['db:ssh', '"ssh" is not a port number'],
    ['10.0.0.0/33:22', '"/33" is not a prefix length for 10.0.0.0'],
    ['db/8:22', '"db/8" is not an address range'],
    ['bad_host!:22', 'is neither a host name, an address, a range nor *'],
    ['*.:22', 'is not a name pattern'],
  ])('refuses %s with a one-line reason', (text, reason) => {
    const error = catchError(() => parseTargetRule(text));
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toContain(`--allow ${text}: `);
    expect((error as Error).message).toContain(reason);
  });
});
