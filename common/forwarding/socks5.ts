import { Buffer } from 'node:buffer';
import { isIPv6, SocketAddress } from 'node:net';
import type { HostPort } from '../transport/address.js';

/**
 * The SOCKS5 messages cproxy's dynamic forwards (-D) speak, RFC 1928: the method negotiation
 * (only "no authentication": the forward listens on loopback by default, and the link behind it
 * is what is authenticated) and the CONNECT request, with IPv4, IPv6 and domain-name addresses.
 * Pure codecs, no sockets: each parser looks at the bytes received so far and says whether they
 * are a whole message yet.
 */

export const SOCKS_VERSION = 5;
const METHOD_NO_AUTH = 0x00;
const METHOD_NONE_ACCEPTABLE = 0xff;
const COMMAND_CONNECT = 0x01;
const ADDRESS_IPV4 = 0x01;
const ADDRESS_DOMAIN = 0x03;
const ADDRESS_IPV6 = 0x04;

/** The REP field of a reply (RFC 1928 §6). */
export enum SocksReply {
  Succeeded = 0x00,
  GeneralFailure = 0x01,
  NotAllowed = 0x02,
  NetworkUnreachable = 0x03,
  HostUnreachable = 0x04,
  ConnectionRefused = 0x05,
  TtlExpired = 0x06,
  CommandNotSupported = 0x07,
  AddressTypeNotSupported = 0x08,
}

/** The longest greeting (1 + 1 + 255 methods) and request (a 255-byte name): nothing longer is read. */
export const MAX_GREETING_BYTES = 257;
export const MAX_REQUEST_BYTES = 4 + 1 + 255 + 2;

/** What the bytes so far amount to: not yet a whole message, one (and its length), or a refusal. */
export type Parsed<T> =
  | { kind: 'incomplete' }
  | ({ kind: 'complete'; length: number } & T)
  /** Not SOCKS5, or nothing we can serve: answer `reply` (when there is one to send) and close. */
  | { kind: 'refused'; reason: string; reply: Buffer | null };

/**
 * The client's greeting: VER, NMETHODS, METHODS. Complete when "no authentication" is among the
 * methods; refused (with the "no acceptable method" answer) when it is not.
 */
export function parseGreeting(bytes: Buffer): Parsed<Record<never, never>> {
  if (bytes.length < 1) return { kind: 'incomplete' };
  if (bytes[0] !== SOCKS_VERSION) return { kind: 'refused', reason: `not SOCKS5 (first byte ${String(bytes[0])})`, reply: null };
  if (bytes.length < 2) return { kind: 'incomplete' };
  const count = bytes[1] as number;
  if (count === 0) return { kind: 'refused', reason: 'the greeting offers no method', reply: methodReply(METHOD_NONE_ACCEPTABLE) };
  if (bytes.length < 2 + count) return { kind: 'incomplete' };
  const methods = bytes.subarray(2, 2 + count);
  if (!methods.includes(METHOD_NO_AUTH)) {
    return { kind: 'refused', reason: 'the client offers no method without authentication', reply: methodReply(METHOD_NONE_ACCEPTABLE) };
  }
  return { kind: 'complete', length: 2 + count };
}

/** The answer to a greeting we accept. */
export function acceptedGreetingReply(): Buffer {
  return methodReply(METHOD_NO_AUTH);
}

function methodReply(method: number): Buffer {
  return Buffer.from([SOCKS_VERSION, method]);
}

/**
 * The request: VER, CMD, RSV, ATYP, DST.ADDR, DST.PORT. Complete for a CONNECT to a usable
 * address; refused with the reply RFC 1928 names for another command (07), another address type
 * (08), or a name that cannot be a host's (01).
 */
export function parseRequest(bytes: Buffer): Parsed<{ target: HostPort }> {
  if (bytes.length < 1) return { kind: 'incomplete' };
  if (bytes[0] !== SOCKS_VERSION) return { kind: 'refused', reason: `request of version ${String(bytes[0])}`, reply: null };
  if (bytes.length < 4) return { kind: 'incomplete' };
  const command = bytes[1] as number;
  const addressType = bytes[3] as number;
  if (command !== COMMAND_CONNECT) {
    return { kind: 'refused', reason: `command ${command} (only CONNECT is served)`, reply: encodeReply(SocksReply.CommandNotSupported) };
  }
  let host: string;
  let at: number;
  if (addressType === ADDRESS_IPV4) {
    if (bytes.length < 4 + 4 + 2) return { kind: 'incomplete' };
    host = Array.from(bytes.subarray(4, 8)).join('.');
    at = 8;
  } else if (addressType === ADDRESS_IPV6) {
    if (bytes.length < 4 + 16 + 2) return { kind: 'incomplete' };
    host = ipv6Text(bytes.subarray(4, 20));
    at = 20;
  } else if (addressType === ADDRESS_DOMAIN) {
    if (bytes.length < 5) return { kind: 'incomplete' };
    const nameLength = bytes[4] as number;
    if (bytes.length < 5 + nameLength + 2) return { kind: 'incomplete' };
    host = bytes.subarray(5, 5 + nameLength).toString('latin1');
    at = 5 + nameLength;
    if (!isHostName(host)) {
      return { kind: 'refused', reason: `"${printable(host)}" is not a host name`, reply: encodeReply(SocksReply.GeneralFailure) };
    }
  } else {
    return { kind: 'refused', reason: `address type ${addressType}`, reply: encodeReply(SocksReply.AddressTypeNotSupported) };
  }
  const port = bytes.readUInt16BE(at);
  if (port === 0) return { kind: 'refused', reason: 'port 0', reply: encodeReply(SocksReply.GeneralFailure) };
  return { kind: 'complete', length: at + 2, target: { host, port } };
}

/**
 * A reply. BND.ADDR and BND.PORT are 0.0.0.0:0: the connection is made by sproxy, far away, and
 * its local address would tell the client nothing it can use (CONNECT clients ignore it).
 */
export function encodeReply(reply: SocksReply): Buffer {
  return Buffer.from([SOCKS_VERSION, reply, 0x00, ADDRESS_IPV4, 0, 0, 0, 0, 0, 0]);
}

/**
 * The reply for a session that sproxy ended before its target answered, from the RESET's reason
 * (PROTOCOL.md §4.2: sproxy's reasons name the target's error code).
 */
export function replyForReset(reason: string): SocksReply {
  if (/is not allowed by sproxy|too many sessions/.test(reason)) return SocksReply.NotAllowed;
  if (/\bECONNREFUSED\b/.test(reason)) return SocksReply.ConnectionRefused;
  if (/\bENETUNREACH\b/.test(reason)) return SocksReply.NetworkUnreachable;
  if (/\b(EHOSTUNREACH|ENOTFOUND|EAI_AGAIN|EAI_NONAME)\b/.test(reason)) return SocksReply.HostUnreachable;
  if (/\bETIMEDOUT\b|no answer within/.test(reason)) return SocksReply.HostUnreachable;
  return SocksReply.GeneralFailure;
}

/** An IPv6 address's 16 bytes in its canonical text (RFC 5952: `::1`, not `0:0:0:0:0:0:0:1`). */
function ipv6Text(bytes: Buffer): string {
  const groups: string[] = [];
  for (let at = 0; at < 16; at += 2) groups.push(bytes.readUInt16BE(at).toString(16));
  const full = groups.join(':');
  return isIPv6(full) ? new SocketAddress({ address: full, family: 'ipv6' }).address : full;
}

/** Letters, digits, hyphens, underscores and dots: what DNS names and /etc/hosts names are made of. */
function isHostName(name: string): boolean {
  return name.length > 0 && /^[A-Za-z0-9_.-]+$/.test(name) && !name.startsWith('.') && !name.includes('..');
}

/** A name for a log line, with anything unprintable escaped. */
function printable(text: string): string {
  return JSON.stringify(text).slice(1, -1);
}
