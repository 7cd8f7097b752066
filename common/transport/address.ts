import { ConfigError } from '../support/errors.js';

export interface HostPort {
  host: string;
  port: number;
}

/** Parses a TCP port number (1-65535), or port 0 when `allowZero` (listen on any free port). */
export function parsePort(text: string, what: string, allowZero = false): number {
  if (!/^\d{1,5}$/.test(text)) throw new ConfigError(`${what}: "${text}" is not a port number`);
  const port = Number(text);
  if (port > 65535 || (port === 0 && !allowZero)) throw new ConfigError(`${what}: port ${port} is out of range`);
  return port;
}

/**
 * Parses `HOST:PORT`, `[IPV6]:PORT`, or, when `defaultHost` is given, a bare `PORT`.
 * Throws ConfigError with a one-line reason.
 */
export function parseHostPort(text: string, what: string, defaultHost?: string, allowZeroPort = false): HostPort {
  const trimmed = text.trim();
  const bracketed = /^\[([^\]]+)\]:(\d+)$/.exec(trimmed);
  if (bracketed !== null) {
    return { host: bracketed[1] as string, port: parsePort(bracketed[2] as string, what, allowZeroPort) };
  }
  const colon = trimmed.lastIndexOf(':');
  if (colon === -1) {
    if (defaultHost === undefined) throw new ConfigError(`${what}: "${text}" must be HOST:PORT`);
    return { host: defaultHost, port: parsePort(trimmed, what, allowZeroPort) };
  }
  const host = trimmed.slice(0, colon);
  if (host === '' || /[:[\]]/.test(host)) {
    throw new ConfigError(`${what}: "${text}" must be HOST:PORT (write IPv6 addresses as [ADDR]:PORT)`);
  }
  return { host, port: parsePort(trimmed.slice(colon + 1), what, allowZeroPort) };
}

/** `host:port`, with brackets around IPv6 addresses. */
export function formatHostPort(address: HostPort): string {
  return `${formatHost(address.host)}:${address.port}`;
}

/** A host as it goes before `:PORT`: an IPv6 address in brackets. */
export function formatHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}
