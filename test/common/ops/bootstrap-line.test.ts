import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeBootstrapLine, encodeBootstrapLine, formatPortRange, parsePortRange } from '../../../common/ops/bootstrap-line.js';
import { ConfigError } from '../../../common/support/errors.js';

describe('the bootstrap announcement line', () => {
  it('round-trips port, secret and log file, as one line', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 65535 }), fc.uint8Array({ minLength: 16, maxLength: 64 }), fc.string(), (port, bytes, logFile) => {
        const secret = Buffer.from(bytes);
        const line = encodeBootstrapLine({ port, secret, logFile });
        expect(line.endsWith('\n')).toBe(true);
        expect(line.slice(0, -1)).not.toContain('\n');
        const decoded = decodeBootstrapLine(line);
        expect(decoded?.port).toBe(port);
        expect(decoded?.secret.equals(secret)).toBe(true);
        expect(decoded?.logFile).toBe(logFile);
      }),
    );
  });

  it('passes over lines that are not one (a login banner), and refuses a malformed one', () => {
    expect(decodeBootstrapLine('Welcome to the bastion\n')).toBeNull();
    expect(decodeBootstrapLine('')).toBeNull();
    const good = JSON.parse(encodeBootstrapLine({ port: 2022, secret: randomBytes(32), logFile: '/l' }).slice('eternal-tcp-bootstrap '.length)) as Record<string, unknown>;
    const line = (body: Record<string, unknown>): string => `eternal-tcp-bootstrap ${JSON.stringify(body)}`;
    expect(() => decodeBootstrapLine('eternal-tcp-bootstrap {nope')).toThrow(ConfigError);
    expect(() => decodeBootstrapLine(line({ ...good, version: 2 }))).toThrow(/version 2/);
    expect(() => decodeBootstrapLine(line({ ...good, port: 0 }))).toThrow(/port/);
    expect(() => decodeBootstrapLine(line({ ...good, port: '2022' }))).toThrow(/port/);
    expect(() => decodeBootstrapLine(line({ ...good, secret: 'abc' }))).toThrow(/secret/);
    expect(() => decodeBootstrapLine(line({ ...good, secret: 'zz'.repeat(32) }))).toThrow(/secret/);
    expect(() => decodeBootstrapLine(line({ ...good, log: 3 }))).toThrow(/log/);
  });
});

describe('--port-range', () => {
  it('takes LOW-HIGH or one port, and says what is wrong otherwise', () => {
    expect(parsePortRange('2022-2122')).toEqual({ low: 2022, high: 2122 });
    expect(parsePortRange(' 3000 ')).toEqual({ low: 3000, high: 3000 });
    expect(formatPortRange({ low: 3000, high: 3000 })).toBe('3000');
    expect(formatPortRange({ low: 1, high: 2 })).toBe('1-2');
    for (const bad of ['', '0-10', '10-5', '1-65536', 'a-b', '1-2-3', '-5']) expect(() => parsePortRange(bad), bad).toThrow(/--port-range/);
  });
});
