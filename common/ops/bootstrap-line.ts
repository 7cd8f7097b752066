import { Buffer } from 'node:buffer';
import { ConfigError } from '../support/errors.js';

/**
 * The one line a bootstrap sproxy (`sproxy --bootstrap`, started by `cproxy --ssh` through ssh)
 * prints on stdout once it listens: where it listens, the secret it made for this one client, and
 * where it logs. ssh carries it back over its encrypted channel; nothing else ever holds the
 * secret outside the two processes' memory (not an argument, not the environment, not a log).
 *
 *   eternal-tcp-bootstrap {"version":1,"port":2022,"secret":"<the secret's bytes in hex>","log":"/root/.local/state/eternal-tcp/sproxy-bootstrap.log"}
 *
 * A prefix and then JSON: a login script may print banners on stdout before it, and the reader
 * skips every line without the prefix.
 */
export const BOOTSTRAP_LINE_PREFIX = 'eternal-tcp-bootstrap ';
export const BOOTSTRAP_LINE_VERSION = 1;

export interface BootstrapAnnouncement {
  port: number;
  secret: Buffer;
  /** The bootstrap sproxy's log file on its host. */
  logFile: string;
}

export function encodeBootstrapLine(announcement: BootstrapAnnouncement): string {
  const body = { version: BOOTSTRAP_LINE_VERSION, port: announcement.port, secret: announcement.secret.toString('hex'), log: announcement.logFile };
  return `${BOOTSTRAP_LINE_PREFIX}${JSON.stringify(body)}\n`;
}

/**
 * The announcement in `line`, or null when the line is not one (a banner). Throws ConfigError for
 * a line with the prefix that does not hold a valid announcement of this version.
 */
export function decodeBootstrapLine(line: string): BootstrapAnnouncement | null {
  const trimmed = line.trim();
  if (!trimmed.startsWith(BOOTSTRAP_LINE_PREFIX.trimEnd())) return null;
  let body: unknown;
  try {
    body = JSON.parse(trimmed.slice(BOOTSTRAP_LINE_PREFIX.length));
  } catch {
    throw new ConfigError('the remote sproxy printed a bootstrap line that is not JSON');
  }
  const fields = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
  if (fields['version'] !== BOOTSTRAP_LINE_VERSION) {
    throw new ConfigError(`the remote sproxy speaks bootstrap version ${String(fields['version'])}, this cproxy ${BOOTSTRAP_LINE_VERSION}: install the same eternal-tcp on both`);
  }
  const { port, secret, log } = fields;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) throw new ConfigError('the bootstrap line has no valid port');
  if (typeof secret !== 'string' || !/^([0-9a-f]{2}){16,}$/.test(secret)) throw new ConfigError('the bootstrap line has no valid secret');
  if (typeof log !== 'string') throw new ConfigError('the bootstrap line has no log file');
  return { port, secret: Buffer.from(secret, 'hex'), logFile: log };
}

/** A range of ports to listen on, both ends included. */
export interface PortRange {
  low: number;
  high: number;
}

export const DEFAULT_BOOTSTRAP_PORT_RANGE: PortRange = { low: 2022, high: 2122 };

/** Parses `LOW-HIGH` (or one port); throws ConfigError with a one-line reason. */
export function parsePortRange(text: string, flag = '--port-range'): PortRange {
  const match = /^\s*(\d{1,5})\s*(?:-\s*(\d{1,5})\s*)?$/.exec(text);
  const low = match === null ? Number.NaN : Number(match[1]);
  const high = match === null ? Number.NaN : Number(match[2] ?? match[1]);
  if (!(low >= 1 && high <= 65535 && low <= high)) throw new ConfigError(`${flag} must be LOW-HIGH, ports from 1 to 65535 with LOW <= HIGH, got "${text}"`);
  return { low, high };
}

export function formatPortRange(range: PortRange): string {
  return range.low === range.high ? String(range.low) : `${range.low}-${range.high}`;
}
