import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  acceptedGreetingReply,
  encodeReply,
  MAX_GREETING_BYTES,
  MAX_REQUEST_BYTES,
  parseGreeting,
  parseRequest,
  replyForReset,
  SocksReply,
} from '../../../common/forwarding/socks5.js';

const request = (...bytes: number[]): Buffer => Buffer.from(bytes);

describe('SOCKS5 codec (RFC 1928)', () => {
  it('accepts a greeting that offers "no authentication", and only whole ones', () => {
    const greeting = request(5, 3, 2, 0, 1);
    expect(parseGreeting(greeting)).toEqual({ kind: 'complete', length: 5 });
    for (let cut = 0; cut < greeting.length; cut++) expect(parseGreeting(greeting.subarray(0, cut)).kind).toBe('incomplete');
    expect([...acceptedGreetingReply()]).toEqual([5, 0]);
  });

  it('refuses a greeting without "no authentication" with FF, and one of another version without an answer', () => {
    const refused = parseGreeting(request(5, 1, 2));
    expect(refused.kind === 'refused' && [...(refused.reply ?? [])]).toEqual([5, 0xff]);
    expect(parseGreeting(request(5, 0)).kind).toBe('refused');
    const socks4 = parseGreeting(request(4, 1, 0, 80));
    expect(socks4.kind === 'refused' && socks4.reply).toBeNull();
  });

  it('reads CONNECT to IPv4, IPv6 (canonical text) and domain names, with the request\'s length', () => {
    expect(parseRequest(request(5, 1, 0, 1, 10, 0, 0, 7, 0x1f, 0x90, 0xaa))).toEqual({ kind: 'complete', length: 10, target: { host: '10.0.0.7', port: 8080 } });
    const ipv6 = request(5, 1, 0, 4, ...new Array<number>(15).fill(0), 1, 0, 22);
    expect(parseRequest(ipv6)).toEqual({ kind: 'complete', length: 22, target: { host: '::1', port: 22 } });
    const name = Buffer.concat([request(5, 1, 0, 3, 11), Buffer.from('example.org'), request(1, 187)]);
    expect(parseRequest(name)).toEqual({ kind: 'complete', length: name.length, target: { host: 'example.org', port: 443 } });
    for (let cut = 0; cut < name.length; cut++) expect(parseRequest(name.subarray(0, cut)).kind).toBe('incomplete');
  });

  it('answers another command with 07, another address type with 08, and a name that is no host name with 01', () => {
    const replyOf = (bytes: Buffer): number | undefined => {
      const parsed = parseRequest(bytes);
      return parsed.kind === 'refused' ? parsed.reply?.[1] : undefined;
    };
    expect(replyOf(request(5, 2, 0, 1, 127, 0, 0, 1, 0, 80))).toBe(SocksReply.CommandNotSupported);
    expect(replyOf(request(5, 3, 0, 1, 127, 0, 0, 1, 0, 80))).toBe(SocksReply.CommandNotSupported);
    expect(replyOf(request(5, 1, 0, 2, 127, 0, 0, 1, 0, 80))).toBe(SocksReply.AddressTypeNotSupported);
    expect(replyOf(Buffer.concat([request(5, 1, 0, 3, 9), Buffer.from('a:b@c/d e'), request(0, 80)]))).toBe(SocksReply.GeneralFailure);
    expect(replyOf(request(5, 1, 0, 3, 0, 0, 80))).toBe(SocksReply.GeneralFailure);
    expect(replyOf(request(5, 1, 0, 1, 127, 0, 0, 1, 0, 0))).toBe(SocksReply.GeneralFailure);
  });

  it('encodes replies with a zero bound address', () => {
    expect([...encodeReply(SocksReply.ConnectionRefused)]).toEqual([5, 5, 0, 1, 0, 0, 0, 0, 0, 0]);
  });

  it('maps sproxy\'s reasons to replies', () => {
    expect(replyForReset('target 10.0.0.1:22 is not allowed by sproxy (see its --allow)')).toBe(SocksReply.NotAllowed);
    expect(replyForReset('target 127.0.0.1:9 unreachable: connect ECONNREFUSED 127.0.0.1:9')).toBe(SocksReply.ConnectionRefused);
    expect(replyForReset('target x.invalid:80 unreachable: getaddrinfo ENOTFOUND x.invalid')).toBe(SocksReply.HostUnreachable);
    expect(replyForReset('target 10.9.9.9:80 unreachable: connect ENETUNREACH 10.9.9.9:80')).toBe(SocksReply.NetworkUnreachable);
    expect(replyForReset('target 10.9.9.9:80 unreachable: no answer within 10000 ms')).toBe(SocksReply.HostUnreachable);
    expect(replyForReset('peer socket error: whatever')).toBe(SocksReply.GeneralFailure);
  });

  it('never throws on any input, and a complete message never claims more bytes than it was given or than the limit', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const buffer = Buffer.from(bytes);
        for (const parsed of [parseGreeting(buffer), parseRequest(buffer)]) {
          if (parsed.kind === 'complete') {
            expect(parsed.length).toBeLessThanOrEqual(buffer.length);
            expect(parsed.length).toBeLessThanOrEqual(Math.max(MAX_GREETING_BYTES, MAX_REQUEST_BYTES));
          }
        }
        // An incomplete message is a prefix that could still become one: never past the limit.
        if (parseRequest(buffer).kind === 'incomplete') expect(buffer.length).toBeLessThan(MAX_REQUEST_BYTES);
        if (parseGreeting(buffer).kind === 'incomplete') expect(buffer.length).toBeLessThan(MAX_GREETING_BYTES);
      }),
      { numRuns: 20_000, seed: 1928 },
    );
  });
});
