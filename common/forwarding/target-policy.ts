import { BlockList, isIP } from 'node:net';
import { ConfigError } from '../support/errors.js';
import { parsePort, type HostPort } from '../transport/address.js';
import { splitColonFields } from './forward-spec.js';

/**
 * What sproxy lets a client reach (`--allow`), as patterns: pure, no sockets, no DNS.
 *
 *   db.internal:5432        one name, one port
 *   *.internal:22           any name under internal (not internal itself)
 *   10.0.0.0/8:22,80-89     an address range (IPv4 or IPv6 CIDR), a list of ports and ranges
 *   [fd00::/8]:*            IPv6 in brackets; * for every port
 *   *:443                   any host
 *
 * A name pattern matches names only, and an address pattern addresses only: sproxy does not
 * resolve a name to check it against an address range (the answer could change between the check
 * and the connect). Names compare without regard to case and a trailing dot.
 */

type HostPattern =
  | { kind: 'any' }
  | { kind: 'name'; name: string }
  | { kind: 'subdomain'; suffix: string }
  | { kind: 'addresses'; list: BlockList; text: string };

export interface TargetRule {
  readonly text: string;
  readonly host: HostPattern;
  /** Inclusive port ranges. */
  readonly ports: ReadonlyArray<readonly [number, number]>;
}

const canonicalName = (name: string): string => name.toLowerCase().replace(/\.$/, '');

function parsePorts(text: string, what: string): Array<[number, number]> {
  if (text === '*') return [[1, 65535]];
  return text.split(',').map((part) => {
    const range = /^(\d+)-(\d+)$/.exec(part);
    if (range === null) {
      const port = parsePort(part, what);
      return [port, port];
    }
    const low = parsePort(range[1] as string, what);
    const high = parsePort(range[2] as string, what);
    if (low > high) throw new ConfigError(`${what}: port range ${part} goes backwards`);
    return [low, high];
  });
}

function parseHostPattern(text: string, what: string): HostPattern {
  if (text === '*') return { kind: 'any' };
  const slash = text.indexOf('/');
  const address = slash === -1 ? text : text.slice(0, slash);
  const family = isIP(address);
  if (family !== 0) {
    const bits = family === 4 ? 32 : 128;
    const prefixText = slash === -1 ? String(bits) : text.slice(slash + 1);
    const prefix = /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : Number.NaN;
    if (!(prefix >= 0 && prefix <= bits)) throw new ConfigError(`${what}: "/${prefixText}" is not a prefix length for ${address}`);
    const list = new BlockList();
    list.addSubnet(address, prefix, family === 4 ? 'ipv4' : 'ipv6');
    return { kind: 'addresses', list, text };
  }
  if (slash !== -1) throw new ConfigError(`${what}: "${text}" is not an address range`);
  if (text.startsWith('*.')) {
    const suffix = canonicalName(text.slice(2));
    if (!isHostName(suffix)) throw new ConfigError(`${what}: "${text}" is not a name pattern`);
    return { kind: 'subdomain', suffix };
  }
  if (!isHostName(text)) throw new ConfigError(`${what}: "${text}" is neither a host name, an address, a range nor *`);
  return { kind: 'name', name: canonicalName(text) };
}

function isHostName(text: string): boolean {
  return /^[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$/.test(text) && text.length <= 254;
}

/** Parses one `--allow` (or `--allow-listen`) pattern, HOST:PORTS; throws ConfigError with a one-line reason. */
export function parseTargetRule(text: string, flag = '--allow'): TargetRule {
  const what = `${flag} ${text}`;
  const trimmed = text.trim();
  // The same fields as a forward's: an IPv6 address or range in brackets is one.
  const fields = splitColonFields(trimmed, what);
  const [hostText, portsText] = fields;
  if (fields.length !== 2 || hostText === undefined || portsText === undefined || hostText === '') {
    throw new ConfigError(`${what}: expected HOST:PORTS (a name, *.domain, an address or CIDR range, or *; IPv6 in brackets)`);
  }
  return { text: trimmed, host: parseHostPattern(hostText, what), ports: parsePorts(portsText, what) };
}

function hostMatches(pattern: HostPattern, host: string): boolean {
  const family = isIP(host);
  switch (pattern.kind) {
    case 'any':
      return true;
    case 'addresses':
      return family !== 0 && pattern.list.check(host, family === 4 ? 'ipv4' : 'ipv6');
    case 'name':
      return family === 0 && canonicalName(host) === pattern.name;
    case 'subdomain':
      return family === 0 && canonicalName(host).endsWith(`.${pattern.suffix}`);
  }
}

/** The first rule that lets a client reach `target`, or null: refused. */
export function allowingRule(rules: readonly TargetRule[], target: HostPort): TargetRule | null {
  for (const rule of rules) {
    if (rule.ports.some(([low, high]) => target.port >= low && target.port <= high) && hostMatches(rule.host, target.host)) return rule;
  }
  return null;
}
