import { Buffer } from 'node:buffer';

/** Bytes of an IPv4 address, and of an IPv6 one. */
export const IPV4_BYTES = 4;
export const IPV6_BYTES = 16;

const IPV6_GROUPS = IPV6_BYTES / 2;
/** Where an IPv6 address may carry an IPv4 one in dotted form: its last two groups. */
const EMBEDDED_IPV4_GROUP = IPV6_GROUPS - 2;

/** `a.b.c.d` from the 4 bytes at `offset`. */
export function formatIpv4(bytes: Uint8Array, offset = 0): string {
  return `${bytes[offset]}.${bytes[offset + 1]}.${bytes[offset + 2]}.${bytes[offset + 3]}`;
}

/**
 * The 16 bytes at `offset` as text, written the way Node writes a socket's `remoteAddress` (libuv's
 * inet_ntop, after ISC's), so that an address from a PROXY header reads the same as one from a
 * socket: lowercase groups without leading zeros, the first longest run of two or more zero groups
 * as `::`, and the last 32 bits dotted for an IPv4-mapped address (`::ffff:1.2.3.4`) and for the
 * deprecated IPv4-compatible form (`::1.2.3.4`, but `::1` and `::2`).
 * test/common/protocol/ip-address.test.ts checks it against Node's net.SocketAddress.
 */
export function formatIpv6(bytes: Uint8Array, offset = 0): string {
  const groups: number[] = [];
  for (let i = 0; i < IPV6_GROUPS; i++) groups.push(((bytes[offset + 2 * i] as number) << 8) | (bytes[offset + 2 * i + 1] as number));
  const run = longestZeroRun(groups);
  let text = '';
  for (let i = 0; i < IPV6_GROUPS; i++) {
    if (run !== null && i >= run.start && i < run.start + run.length) {
      if (i === run.start) text += ':';
      continue;
    }
    if (i !== 0) text += ':';
    if (i === EMBEDDED_IPV4_GROUP && run !== null && run.start === 0 && embedsIpv4(run.length, groups)) {
      return text + formatIpv4(bytes, offset + 2 * EMBEDDED_IPV4_GROUP);
    }
    text += (groups[i] as number).toString(16);
  }
  if (run !== null && run.start + run.length === IPV6_GROUPS) text += ':';
  return text;
}

/** The rule of ISC's inet_ntop6 for a leading zero run of `length` groups (a run of 7 never reaches it). */
function embedsIpv4(length: number, groups: readonly number[]): boolean {
  return length === 6 || (length === 5 && groups[5] === 0xffff);
}

/** The first longest run of at least two zero groups, or null. */
function longestZeroRun(groups: readonly number[]): { start: number; length: number } | null {
  let best: { start: number; length: number } | null = null;
  let start = -1;
  for (let i = 0; i <= groups.length; i++) {
    if (i < groups.length && groups[i] === 0) {
      if (start === -1) start = i;
      continue;
    }
    if (start !== -1 && i - start >= 2 && (best === null || i - start > best.length)) best = { start, length: i - start };
    start = -1;
  }
  return best;
}

/** The 4 bytes of a dotted IPv4 address (no leading zeros, each part 0-255), or null. */
export function parseIpv4(text: string): Buffer | null {
  const parts = text.split('.');
  if (parts.length !== IPV4_BYTES) return null;
  const bytes = Buffer.alloc(IPV4_BYTES);
  for (const [index, part] of parts.entries()) {
    if (!/^(0|[1-9]\d{0,2})$/.test(part) || Number(part) > 255) return null;
    bytes[index] = Number(part);
  }
  return bytes;
}

/** The 16 bytes of an IPv6 address (`::` and a dotted IPv4 tail allowed, no zone), or null. */
export function parseIpv6(text: string): Buffer | null {
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const head = groupsOf(halves[0] as string, halves.length === 1);
  const tail = halves.length === 2 ? groupsOf(halves[1] as string, true) : [];
  if (head === null || tail === null) return null;
  const missing = IPV6_GROUPS - head.length - tail.length;
  // `::` stands for at least one zero group; without it, all eight must be there.
  if (halves.length === 2 ? missing < 1 : missing !== 0) return null;
  const groups = [...head, ...new Array<number>(missing).fill(0), ...tail];
  const bytes = Buffer.alloc(IPV6_BYTES);
  for (const [index, group] of groups.entries()) bytes.writeUInt16BE(group, 2 * index);
  return bytes;
}

/** The groups of one side of `::` (empty text: none); a dotted IPv4 may end the last side. */
function groupsOf(text: string, mayEndWithIpv4: boolean): number[] | null {
  if (text === '') return [];
  const parts = text.split(':');
  const groups: number[] = [];
  for (const [index, part] of parts.entries()) {
    if (mayEndWithIpv4 && index === parts.length - 1 && part.includes('.')) {
      const ipv4 = parseIpv4(part);
      if (ipv4 === null) return null;
      groups.push(ipv4.readUInt16BE(0), ipv4.readUInt16BE(2));
      continue;
    }
    if (!/^[0-9a-fA-F]{1,4}$/.test(part)) return null;
    groups.push(parseInt(part, 16));
  }
  return groups;
}
