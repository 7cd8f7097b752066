import { Buffer } from 'node:buffer';
import { formatIpv4, formatIpv6, IPV4_BYTES, IPV6_BYTES, parseIpv4, parseIpv6 } from './ip-address.js';

/**
 * The binary header of the PROXY protocol, version 2 (HAProxy's proxy-protocol.txt §2.2; our
 * PROTOCOL.md §0.1): a load balancer that accepted a client's connection sends it first on the
 * connection it opens to us, to say who the client is. Pure codec: sproxy's reader is
 * common/transport/proxy-header-reader.ts.
 *
 *   signature (12) | version << 4 | command (1) | family << 4 | transport (1) | length (2, BE)
 *   | address block for the family | TLVs (type 1, length 2 BE, value), to `length` bytes in all
 */

/** The 12 bytes every version 2 header starts with: "\r\n\r\n\0\r\nQUIT\n". */
export const PROXY_V2_SIGNATURE: Buffer = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');
const SIGNATURE_BYTES = PROXY_V2_SIGNATURE.length;
const VERSION_COMMAND_BYTES = 1;
const FAMILY_BYTES = 1;
const LENGTH_BYTES = 2;
const VERSION_COMMAND_OFFSET = SIGNATURE_BYTES;
const FAMILY_OFFSET = VERSION_COMMAND_OFFSET + VERSION_COMMAND_BYTES;
const LENGTH_OFFSET = FAMILY_OFFSET + FAMILY_BYTES;
/** The part of the header before the address block: 16 bytes. */
export const PROXY_V2_FIXED_BYTES = LENGTH_OFFSET + LENGTH_BYTES;

/** The high nibble of byte 13: the only version with this signature. */
export const PROXY_V2_VERSION = 0x2;

/**
 * Largest whole header taken (fixed part, addresses and TLVs). The length field allows 64 KiB, but
 * what HAProxy sends (addresses, then at most a few TLVs: ALPN, authority, TLS details, a unique
 * id) stays within a few hundred bytes; a header announcing more is refused as soon as its length
 * is read, so that an unauthenticated connection makes sproxy hold no more than this.
 */
export const PROXY_V2_MAX_HEADER_BYTES = 4096;

/** The low nibble of byte 13. */
export enum ProxyCommand {
  /** The proxy's own connection (a health check): the receiver uses the real endpoints. */
  Local = 0x0,
  /** On behalf of a client: the addresses are the client's and the proxy's listener. */
  Proxy = 0x1,
}

/** Byte 14: address family (high nibble) and transport (low nibble), the combinations §2.2 defines. */
export enum ProxyFamily {
  Unspec = 0x00,
  Tcp4 = 0x11,
  Udp4 = 0x12,
  Tcp6 = 0x21,
  Udp6 = 0x22,
  UnixStream = 0x31,
  UnixDgram = 0x32,
}

const PORT_BYTES = 2;
/** A sun_path: 108 bytes, the path ended by NUL bytes. */
const UNIX_PATH_BYTES = 108;
const TLV_TYPE_BYTES = 1;
const TLV_LENGTH_BYTES = 2;
const TLV_HEADER_BYTES = TLV_TYPE_BYTES + TLV_LENGTH_BYTES;

type AddressKind = 'none' | 'ipv4' | 'ipv6' | 'unix';

/** What each family's address block holds, and its size: source and destination addresses, then ports. */
const FAMILY_LAYOUT: Record<ProxyFamily, { kind: AddressKind; blockBytes: number }> = {
  [ProxyFamily.Unspec]: { kind: 'none', blockBytes: 0 },
  [ProxyFamily.Tcp4]: { kind: 'ipv4', blockBytes: 2 * IPV4_BYTES + 2 * PORT_BYTES },
  [ProxyFamily.Udp4]: { kind: 'ipv4', blockBytes: 2 * IPV4_BYTES + 2 * PORT_BYTES },
  [ProxyFamily.Tcp6]: { kind: 'ipv6', blockBytes: 2 * IPV6_BYTES + 2 * PORT_BYTES },
  [ProxyFamily.Udp6]: { kind: 'ipv6', blockBytes: 2 * IPV6_BYTES + 2 * PORT_BYTES },
  [ProxyFamily.UnixStream]: { kind: 'unix', blockBytes: 2 * UNIX_PATH_BYTES },
  [ProxyFamily.UnixDgram]: { kind: 'unix', blockBytes: 2 * UNIX_PATH_BYTES },
};

export type ProxyEndpoint =
  | { readonly kind: 'ip'; readonly address: string; readonly port: number }
  | { readonly kind: 'unix'; readonly path: string };

/** A type-length-value extension after the addresses (§2.2.1-2.2.7); not interpreted here. */
export interface ProxyTlv {
  readonly type: number;
  readonly value: Buffer;
}

export interface ProxyHeader {
  readonly command: ProxyCommand;
  readonly family: ProxyFamily;
  /** The client, as the proxy saw it; null for UNSPEC, and for LOCAL (whose block is ignored, §2.2). */
  readonly source: ProxyEndpoint | null;
  /** The proxy's side of the client's connection (its listener); null as `source`. */
  readonly destination: ProxyEndpoint | null;
  readonly tlvs: readonly ProxyTlv[];
  /** Bytes the whole header took: the proxied stream starts right after them. */
  readonly headerBytes: number;
}

/** What a header is made of, for the encoder: a decoded header without its size. */
export type ProxyHeaderFields = Omit<ProxyHeader, 'headerBytes'>;

export type ProxyHeaderDecoding =
  /** Every byte so far fits a header: more are needed to tell. */
  | { readonly status: 'needs-more' }
  | { readonly status: 'header'; readonly header: ProxyHeader }
  /** Not a valid header, whatever follows; `reason` is one line for a log. */
  | { readonly status: 'invalid'; readonly reason: string };

const NEEDS_MORE: ProxyHeaderDecoding = { status: 'needs-more' };

const invalid = (reason: string): ProxyHeaderDecoding => ({ status: 'invalid', reason });

/**
 * Decodes the header at the start of `bytes` (everything received so far). Says `invalid` as early
 * as the bytes allow: at the first byte off the signature, at a bad version, command or family, and
 * at a length out of bounds, before waiting for the rest. Never reads past `bytes` and never throws.
 */
export function decodeProxyHeader(bytes: Buffer): ProxyHeaderDecoding {
  const signatureSeen = Math.min(bytes.length, SIGNATURE_BYTES);
  if (!bytes.subarray(0, signatureSeen).equals(PROXY_V2_SIGNATURE.subarray(0, signatureSeen))) {
    return invalid(describeNonSignature(bytes));
  }
  if (bytes.length <= VERSION_COMMAND_OFFSET) return NEEDS_MORE;
  const versionCommand = bytes[VERSION_COMMAND_OFFSET] as number;
  const version = versionCommand >> 4;
  const command = versionCommand & 0x0f;
  if (version !== PROXY_V2_VERSION) return invalid(`PROXY header version ${version}, not ${PROXY_V2_VERSION}`);
  if (command !== ProxyCommand.Local && command !== ProxyCommand.Proxy) return invalid(`unknown PROXY header command ${command}`);
  if (bytes.length <= FAMILY_OFFSET) return NEEDS_MORE;
  const familyByte = bytes[FAMILY_OFFSET] as number;
  // A LOCAL header's family is ignored (§2.2): only a PROXY header must name a known one.
  const family = isProxyFamily(familyByte) ? familyByte : null;
  if (command === ProxyCommand.Proxy && family === null) return invalid(`unknown PROXY header address family and transport 0x${hex(familyByte)}`);
  if (bytes.length < PROXY_V2_FIXED_BYTES) return NEEDS_MORE;
  const length = bytes.readUInt16BE(LENGTH_OFFSET);
  const headerBytes = PROXY_V2_FIXED_BYTES + length;
  if (headerBytes > PROXY_V2_MAX_HEADER_BYTES) {
    return invalid(`PROXY header of ${headerBytes} bytes, over the limit of ${PROXY_V2_MAX_HEADER_BYTES}`);
  }
  if (command === ProxyCommand.Local) {
    return bytes.length < headerBytes ? NEEDS_MORE : header({ command, family: ProxyFamily.Unspec, source: null, destination: null, tlvs: [] }, headerBytes);
  }
  const layout = FAMILY_LAYOUT[family as ProxyFamily];
  if (length < layout.blockBytes) {
    return invalid(`PROXY header length ${length} is shorter than the ${layout.blockBytes}-byte address block of family 0x${hex(familyByte)}`);
  }
  if (bytes.length < headerBytes) return NEEDS_MORE;
  const block = bytes.subarray(PROXY_V2_FIXED_BYTES, headerBytes);
  const tlvs = decodeTlvs(block.subarray(layout.blockBytes));
  if (typeof tlvs === 'string') return invalid(tlvs);
  const [source, destination] = decodeAddresses(layout.kind, block);
  return header({ command, family: family as ProxyFamily, source, destination, tlvs }, headerBytes);
}

function header(fields: ProxyHeaderFields, headerBytes: number): ProxyHeaderDecoding {
  return { status: 'header', header: { ...fields, headerBytes } };
}

/** Why bytes that are off the signature are no v2 header, naming the cases someone may meet. */
function describeNonSignature(bytes: Buffer): string {
  if (bytes.subarray(0, 6).toString('latin1') === 'PROXY ') {
    return 'a PROXY protocol version 1 (text) header; only version 2 is read (HAProxy: send-proxy-v2)';
  }
  return `no PROXY protocol v2 signature (first bytes: ${bytes.subarray(0, SIGNATURE_BYTES).toString('hex')})`;
}

function isProxyFamily(value: number): value is ProxyFamily {
  return Object.hasOwn(FAMILY_LAYOUT, value);
}

function hex(byte: number): string {
  return byte.toString(16).padStart(2, '0');
}

/** The addresses of `block`: source then destination, then their ports (none for UNSPEC). */
function decodeAddresses(kind: AddressKind, block: Buffer): [ProxyEndpoint | null, ProxyEndpoint | null] {
  switch (kind) {
    case 'none':
      return [null, null];
    case 'ipv4':
    case 'ipv6': {
      const addressBytes = kind === 'ipv4' ? IPV4_BYTES : IPV6_BYTES;
      const format = kind === 'ipv4' ? formatIpv4 : formatIpv6;
      const portsAt = 2 * addressBytes;
      return [
        { kind: 'ip', address: format(block, 0), port: block.readUInt16BE(portsAt) },
        { kind: 'ip', address: format(block, addressBytes), port: block.readUInt16BE(portsAt + PORT_BYTES) },
      ];
    }
    case 'unix':
      return [
        { kind: 'unix', path: unixPath(block.subarray(0, UNIX_PATH_BYTES)) },
        { kind: 'unix', path: unixPath(block.subarray(UNIX_PATH_BYTES, 2 * UNIX_PATH_BYTES)) },
      ];
  }
}

function unixPath(field: Buffer): string {
  const end = field.indexOf(0);
  return field.subarray(0, end === -1 ? field.length : end).toString('utf8');
}

/** The TLVs filling `bytes` exactly, or why they do not (HAProxy refuses such a header too). */
function decodeTlvs(bytes: Buffer): ProxyTlv[] | string {
  const tlvs: ProxyTlv[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    if (bytes.length - offset < TLV_HEADER_BYTES) return `PROXY header ends inside a TLV's type and length (${bytes.length - offset} bytes left)`;
    const type = bytes[offset] as number;
    const length = bytes.readUInt16BE(offset + TLV_TYPE_BYTES);
    const valueAt = offset + TLV_HEADER_BYTES;
    if (valueAt + length > bytes.length) return `PROXY header TLV 0x${hex(type)} of ${length} bytes runs past the header's end`;
    // A copy: the header outlives the chunk it came in, which holds the stream's first bytes too.
    tlvs.push({ type, value: Buffer.from(bytes.subarray(valueAt, valueAt + length)) });
    offset = valueAt + length;
  }
  return tlvs;
}

/**
 * The header `fields` describe: what a load balancer sends (the tests play one). Throws RangeError
 * when they cannot be encoded: an address not of the family, a port or TLV out of range, a header
 * over the length field's 64 KiB. A LOCAL header is written with the family and block given,
 * although a decoder ignores them.
 */
export function encodeProxyHeader(fields: ProxyHeaderFields): Buffer {
  const layout = FAMILY_LAYOUT[fields.family];
  if (layout === undefined) throw new RangeError(`unknown PROXY address family 0x${hex(fields.family)}`);
  const block = Buffer.alloc(layout.blockBytes);
  if (layout.kind === 'none') {
    if (fields.source !== null || fields.destination !== null) throw new RangeError('an UNSPEC PROXY header carries no addresses');
  } else {
    if (fields.source === null || fields.destination === null) throw new RangeError(`family 0x${hex(fields.family)} needs both addresses`);
    encodeAddress(layout.kind, block, 0, fields.source);
    encodeAddress(layout.kind, block, 1, fields.destination);
  }
  const parts: Buffer[] = [block];
  for (const tlv of fields.tlvs) {
    if (!Number.isInteger(tlv.type) || tlv.type < 0 || tlv.type > 0xff) throw new RangeError(`TLV type ${tlv.type} is not a byte`);
    if (tlv.value.length > 0xffff) throw new RangeError(`TLV value of ${tlv.value.length} bytes is over 65535`);
    const tlvHeader = Buffer.alloc(TLV_HEADER_BYTES);
    tlvHeader[0] = tlv.type;
    tlvHeader.writeUInt16BE(tlv.value.length, TLV_TYPE_BYTES);
    parts.push(tlvHeader, tlv.value);
  }
  const body = Buffer.concat(parts);
  if (body.length > 0xffff) throw new RangeError(`PROXY header body of ${body.length} bytes is over 65535`);
  const fixed = Buffer.alloc(PROXY_V2_FIXED_BYTES);
  PROXY_V2_SIGNATURE.copy(fixed);
  fixed[VERSION_COMMAND_OFFSET] = (PROXY_V2_VERSION << 4) | fields.command;
  fixed[FAMILY_OFFSET] = fields.family;
  fixed.writeUInt16BE(body.length, LENGTH_OFFSET);
  return Buffer.concat([fixed, body]);
}

/** Writes endpoint `index` (0 source, 1 destination) of a block of `kind`. */
function encodeAddress(kind: Exclude<AddressKind, 'none'>, block: Buffer, index: 0 | 1, endpoint: ProxyEndpoint): void {
  if (kind === 'unix') {
    if (endpoint.kind !== 'unix') throw new RangeError('a unix family needs unix paths');
    const path = Buffer.from(endpoint.path, 'utf8');
    if (path.length > UNIX_PATH_BYTES || path.includes(0)) throw new RangeError(`unix path ${JSON.stringify(endpoint.path)} does not fit a sun_path`);
    path.copy(block, index * UNIX_PATH_BYTES);
    return;
  }
  if (endpoint.kind !== 'ip') throw new RangeError('an IP family needs IP addresses');
  const address = kind === 'ipv4' ? parseIpv4(endpoint.address) : parseIpv6(endpoint.address);
  if (address === null) throw new RangeError(`${endpoint.address} is not an ${kind === 'ipv4' ? 'IPv4' : 'IPv6'} address`);
  if (!Number.isInteger(endpoint.port) || endpoint.port < 0 || endpoint.port > 0xffff) throw new RangeError(`port ${endpoint.port} is out of range`);
  address.copy(block, index * address.length);
  block.writeUInt16BE(endpoint.port, 2 * address.length + index * PORT_BYTES);
}
