import { describe, expect, it } from 'vitest';
import {
  decodeProxyHeader,
  encodeProxyHeader,
  PROXY_V2_FIXED_BYTES,
  PROXY_V2_MAX_HEADER_BYTES,
  PROXY_V2_SIGNATURE,
  ProxyCommand,
  ProxyFamily,
  type ProxyHeaderFields,
} from '../../../common/protocol/proxy-v2.js';

/** Hex with spaces and comments (`# ...` to the end of a line) removed. */
function hex(text: string): Buffer {
  return Buffer.from(text.replace(/#.*$/gm, '').replace(/\s+/g, ''), 'hex');
}

const SIGNATURE = '0d0a0d0a 000d0a51 5549540a';

/** What HAProxy's send-proxy-v2 sends for a client 127.0.0.1:54321 that reached its listener 127.0.0.2:6666. */
const TCP4_HEADER = hex(`
  ${SIGNATURE}  # signature "\\r\\n\\r\\n\\0\\r\\nQUIT\\n"
  21            # version 2, command PROXY
  11            # family INET, transport STREAM: TCP over IPv4
  000c          # 12 more bytes: the IPv4 address block
  7f000001      # source address 127.0.0.1
  7f000002      # destination address 127.0.0.2
  d431          # source port 54321
  1a0a          # destination port 6666
`);

const TCP4_FIELDS: ProxyHeaderFields = {
  command: ProxyCommand.Proxy,
  family: ProxyFamily.Tcp4,
  source: { kind: 'ip', address: '127.0.0.1', port: 54321 },
  destination: { kind: 'ip', address: '127.0.0.2', port: 6666 },
  tlvs: [],
};

const TCP6_HEADER = hex(`
  ${SIGNATURE}
  21                                # version 2, PROXY
  21                                # INET6, STREAM: TCP over IPv6
  0029                              # 41 bytes: the 36-byte IPv6 block and one 5-byte TLV
  20010db8000000000000000000000001  # source 2001:db8::1
  00000000000000000000ffffc0000201  # destination ::ffff:192.0.2.1
  0050                              # source port 80
  01bb                              # destination port 443
  01 0002 6832                      # TLV type 0x01 (ALPN), 2 bytes: "h2"
`);

/** What HAProxy's health checks send with check-send-proxy: LOCAL, no addresses. */
const LOCAL_HEADER = hex(`${SIGNATURE} 20 00 0000`);

describe('PROXY protocol v2 header', () => {
  it('is a 16-byte fixed part that starts with the 12-byte signature', () => {
    expect(PROXY_V2_SIGNATURE.toString('latin1')).toBe('\r\n\r\n\0\r\nQUIT\n');
    expect(PROXY_V2_FIXED_BYTES).toBe(16);
  });

  it('decodes a TCP over IPv4 header, and encodes the same bytes', () => {
    expect(decodeProxyHeader(TCP4_HEADER)).toEqual({ status: 'header', header: { ...TCP4_FIELDS, headerBytes: 28 } });
    expect(encodeProxyHeader(TCP4_FIELDS)).toEqual(TCP4_HEADER);
  });

  it('decodes a TCP over IPv6 header with a TLV, writing addresses as Node does', () => {
    const fields: ProxyHeaderFields = {
      command: ProxyCommand.Proxy,
      family: ProxyFamily.Tcp6,
      source: { kind: 'ip', address: '2001:db8::1', port: 80 },
      destination: { kind: 'ip', address: '::ffff:192.0.2.1', port: 443 },
      tlvs: [{ type: 0x01, value: Buffer.from('h2') }],
    };
    expect(decodeProxyHeader(TCP6_HEADER)).toEqual({ status: 'header', header: { ...fields, headerBytes: 57 } });
    expect(encodeProxyHeader(fields)).toEqual(TCP6_HEADER);
  });

  it('decodes a LOCAL header, and ignores the family and block of one (spec §2.2)', () => {
    const local = { command: ProxyCommand.Local, family: ProxyFamily.Unspec, source: null, destination: null, tlvs: [], headerBytes: 16 };
    expect(decodeProxyHeader(LOCAL_HEADER)).toEqual({ status: 'header', header: local });
    // A family no PROXY header may carry, and a block of 3 bytes that is no TLV: still LOCAL.
    expect(decodeProxyHeader(hex(`${SIGNATURE} 20 ff 0003 aabbcc`))).toEqual({ status: 'header', header: { ...local, headerBytes: 19 } });
  });

  it('decodes UNSPEC without addresses, and unix paths up to their NUL', () => {
    expect(decodeProxyHeader(hex(`${SIGNATURE} 21 00 0000`))).toMatchObject({ status: 'header', header: { family: ProxyFamily.Unspec, source: null } });
    const unix: ProxyHeaderFields = {
      command: ProxyCommand.Proxy,
      family: ProxyFamily.UnixStream,
      source: { kind: 'unix', path: '/run/client.sock' },
      destination: { kind: 'unix', path: '/run/haproxy.sock' },
      tlvs: [],
    };
    const bytes = encodeProxyHeader(unix);
    expect(bytes.length).toBe(16 + 216);
    expect(decodeProxyHeader(bytes)).toEqual({ status: 'header', header: { ...unix, headerBytes: 232 } });
  });

  it('stops at the header: what follows is the stream, whatever it holds', () => {
    const stream = Buffer.concat([TCP4_HEADER, Buffer.from([0x16, 0x03, 0x01]), TCP4_HEADER]);
    expect(decodeProxyHeader(stream)).toMatchObject({ status: 'header', header: { headerBytes: TCP4_HEADER.length } });
  });

  it('needs more at every cut of a valid header', () => {
    for (const header of [TCP4_HEADER, TCP6_HEADER, LOCAL_HEADER]) {
      for (let cut = 0; cut < header.length; cut++) expect(decodeProxyHeader(header.subarray(0, cut)), `cut at ${cut}`).toEqual({ status: 'needs-more' });
    }
  });

  it.each([
    ['a TLS ClientHello, at its first byte', '16', 'no PROXY protocol v2 signature (first bytes: 16)'],
    ['the plain protocol (a HELLO header)', '0000000400000000', 'no PROXY protocol v2 signature (first bytes: 0000000400000000)'],
    ['the signature, one byte off', `${SIGNATURE.slice(0, -2)}0b 21 11 000c`, 'no PROXY protocol v2 signature (first bytes: 0d0a0d0a000d0a515549540b)'],
    ['a version 1 header', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n').toString('hex'), 'a PROXY protocol version 1 (text) header; only version 2 is read (HAProxy: send-proxy-v2)'],
    ['version 1 in the binary form', `${SIGNATURE} 11`, 'PROXY header version 1, not 2'],
    ['version 3', `${SIGNATURE} 31`, 'PROXY header version 3, not 2'],
    ['command 2', `${SIGNATURE} 22`, 'unknown PROXY header command 2'],
    ['family 0x13 (INET over transport 3)', `${SIGNATURE} 21 13`, 'unknown PROXY header address family and transport 0x13'],
    ['family 0x41', `${SIGNATURE} 21 41 000c`, 'unknown PROXY header address family and transport 0x41'],
    ['an absurd length, before its bytes come', `${SIGNATURE} 21 11 ffff`, `PROXY header of 65551 bytes, over the limit of ${PROXY_V2_MAX_HEADER_BYTES}`],
    ['a LOCAL header with an absurd length', `${SIGNATURE} 20 00 fff0`, `PROXY header of 65536 bytes, over the limit of ${PROXY_V2_MAX_HEADER_BYTES}`],
    ['a length short of the IPv4 block', `${SIGNATURE} 21 11 0008`, 'PROXY header length 8 is shorter than the 12-byte address block of family 0x11'],
    ['a length short of the IPv6 block', `${SIGNATURE} 21 21 000c`, 'PROXY header length 12 is shorter than the 36-byte address block of family 0x21'],
    ['two bytes after the block, no TLV', `${SIGNATURE} 21 11 000e ${'00'.repeat(12)} 0100`, "PROXY header ends inside a TLV's type and length (2 bytes left)"],
    ['a TLV longer than the header', `${SIGNATURE} 21 11 0011 ${'00'.repeat(12)} 04 0003 0000`, "PROXY header TLV 0x04 of 3 bytes runs past the header's end"],
  ])('refuses %s', (_name, bytes, reason) => {
    expect(decodeProxyHeader(hex(bytes))).toEqual({ status: 'invalid', reason });
  });

  it('takes a header of exactly the limit, and not one byte more', () => {
    const tlvBytes = PROXY_V2_MAX_HEADER_BYTES - 16 - 12 - 3;
    const fields: ProxyHeaderFields = { ...TCP4_FIELDS, tlvs: [{ type: 0x04, value: Buffer.alloc(tlvBytes) }] };
    expect(decodeProxyHeader(encodeProxyHeader(fields))).toMatchObject({ status: 'header', header: { headerBytes: PROXY_V2_MAX_HEADER_BYTES } });
    const over = encodeProxyHeader({ ...TCP4_FIELDS, tlvs: [{ type: 0x04, value: Buffer.alloc(tlvBytes + 1) }] });
    expect(decodeProxyHeader(over.subarray(0, 16))).toEqual({
      status: 'invalid',
      reason: `PROXY header of ${PROXY_V2_MAX_HEADER_BYTES + 1} bytes, over the limit of ${PROXY_V2_MAX_HEADER_BYTES}`,
    });
  });

  it('refuses to encode what no header can say', () => {
    const cases: Array<[ProxyHeaderFields, string]> = [
      [{ ...TCP4_FIELDS, source: { kind: 'ip', address: '::1', port: 1 } }, '::1 is not an IPv4 address'],
      [{ ...TCP4_FIELDS, family: ProxyFamily.Tcp6 }, '127.0.0.1 is not an IPv6 address'],
      [{ ...TCP4_FIELDS, destination: { kind: 'ip', address: '127.0.0.1', port: 65536 } }, 'port 65536 is out of range'],
      [{ ...TCP4_FIELDS, source: null }, 'family 0x11 needs both addresses'],
      [{ ...TCP4_FIELDS, family: ProxyFamily.Unspec }, 'an UNSPEC PROXY header carries no addresses'],
      [{ ...TCP4_FIELDS, family: ProxyFamily.UnixDgram }, 'a unix family needs unix paths'],
      [{ ...TCP4_FIELDS, tlvs: [{ type: 256, value: Buffer.alloc(0) }] }, 'TLV type 256 is not a byte'],
      [{ ...TCP4_FIELDS, family: 0x13 as ProxyFamily }, 'unknown PROXY address family 0x13'],
    ];
    for (const [fields, message] of cases) expect(() => encodeProxyHeader(fields)).toThrow(new RangeError(message));
  });
});
