import { SocketAddress } from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatIpv4, formatIpv6, parseIpv4, parseIpv6 } from '../../../common/protocol/ip-address.js';

/** How Node writes an IPv6 address (libuv's inet_ntop): what a socket's remoteAddress looks like. */
function nodeFormat(bytes: Buffer): string {
  const groups = Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(2 * i).toString(16));
  return new SocketAddress({ address: groups.join(':'), family: 'ipv6' }).address;
}

/** Sixteen bytes, mostly made of zero groups so that every run of zeros and the IPv4 forms come up. */
const ipv6BytesArb = fc
  .array(fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, fc.constantFrom(1, 2, 0xffff, 0xfffe), fc.integer({ min: 0, max: 0xffff })), {
    minLength: 8,
    maxLength: 8,
  })
  .map((groups) => {
    const bytes = Buffer.alloc(16);
    groups.forEach((group, i) => bytes.writeUInt16BE(group, 2 * i));
    return bytes;
  });

describe('IPv4 addresses', () => {
  it('format dotted, and parse back only from the dotted form', () => {
    expect(formatIpv4(Buffer.from([10, 0, 255, 1]))).toBe('10.0.255.1');
    expect(formatIpv4(Buffer.from([9, 9, 192, 168, 0, 7]), 2)).toBe('192.168.0.7');
    expect(parseIpv4('192.168.0.7')).toEqual(Buffer.from([192, 168, 0, 7]));
    for (const bad of ['1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', '1.2.3.', 'a.b.c.d', '', '1.2.3.-4']) expect(parseIpv4(bad), bad).toBeNull();
  });
});

describe('IPv6 addresses', () => {
  it.each([
    ['00000000000000000000000000000000', '::'],
    ['00000000000000000000000000000001', '::1'],
    ['00000000000000000000000000000002', '::2'],
    ['00000000000000000000ffff7f000001', '::ffff:127.0.0.1'],
    ['00000000000000000000000001020304', '::1.2.3.4'],
    ['20010db8000000000001000000000001', '2001:db8::1:0:0:1'],
    ['20010db8000000010000000000000000', '2001:db8:0:1::'],
    ['00010000000000020000000000000003', '1:0:0:2::3'],
    ['00010002000300040005000600070000', '1:2:3:4:5:6:7:0'],
    ['fe800000000000000000000000abcdef', 'fe80::ab:cdef'],
  ])('%s is %s, as Node writes it', (hex, text) => {
    const bytes = Buffer.from(hex, 'hex');
    expect(formatIpv6(bytes)).toBe(text);
    expect(nodeFormat(bytes)).toBe(text);
    expect(parseIpv6(text)).toEqual(bytes);
  });

  it('formats any address as Node does, and parses it back', () => {
    fc.assert(
      fc.property(ipv6BytesArb, (bytes) => {
        const text = formatIpv6(bytes);
        expect(text).toBe(nodeFormat(bytes));
        expect(parseIpv6(text)).toEqual(bytes);
      }),
      { numRuns: 5000 },
    );
  });

  it('parses the uncompressed form, and refuses what is no address', () => {
    expect(parseIpv6('0:0:0:0:0:0:0:1')).toEqual(Buffer.from('00000000000000000000000000000001', 'hex'));
    expect(parseIpv6('2001:DB8::A')).toEqual(Buffer.from('20010db800000000000000000000000a', 'hex'));
    for (const bad of ['', ':', ':::', '1::2::3', '1:2:3:4:5:6:7', '1:2:3:4:5:6:7:8:9', '1::2:3:4:5:6:7:8', '12345::', '::g', '1.2.3.4::', '::1.2.3', ':1::', '1:2:3:4:5:6:7:8::']) {
      expect(parseIpv6(bad), bad).toBeNull();
    }
  });
});
