import { ConfigError } from '../support/errors.js';
import { MAX_OPEN_TARGET_BYTES } from '../protocol/messages.js';
import { formatHostPort, parsePort, type HostPort } from '../transport/address.js';

/**
 * What a forward says, parsed from the command line: pure, no sockets. A local forward listens on
 * cproxy's side and asks sproxy to connect each accepted connection to its target (ssh's -L).
 */
export interface LocalForward {
  /** Where cproxy listens. */
  listen: HostPort;
  /**
   * What sproxy connects the sessions to ("host:port" in the OPEN), or null: sproxy's default
   * target. An empty host (Tcpipe's form, --ports): that port on sproxy's target host (":port").
   */
  target: HostPort | null;
}

/**
 * A remote forward (ssh's -R): sproxy listens on `listen` on its side, and each connection it
 * accepts becomes a session that cproxy connects to `target` on its side.
 */
export interface RemoteForward {
  /** Where sproxy listens (its loopback when no BIND is given). */
  listen: HostPort;
  /** What cproxy connects each session to. */
  target: HostPort;
}

/** A dynamic forward (ssh's -D): a SOCKS5 server on cproxy's side, each CONNECT a session to its destination. */
export interface DynamicForward {
  /** Where cproxy listens. */
  listen: HostPort;
}

/** ssh's default for a forward without a bind address: only this host's own programs may use it. */
export const DEFAULT_BIND_HOST = '127.0.0.1';
/** A bind address of `*`, or an empty one, as in ssh: every interface. */
const ALL_INTERFACES = '0.0.0.0';

/**
 * Splits `text` at colons, an IPv6 address in brackets counting as one field (its brackets
 * dropped). Throws on an unclosed bracket or a bracket in the middle of a field.
 */
export function splitColonFields(text: string, what: string): string[] {
  const fields: string[] = [];
  let at = 0;
  for (;;) {
    let field: string;
    if (text[at] === '[') {
      const close = text.indexOf(']', at);
      if (close === -1) throw new ConfigError(`${what}: "${text}" has a "[" without its "]"`);
      field = text.slice(at + 1, close);
      at = close + 1;
      if (at < text.length && text[at] !== ':') throw new ConfigError(`${what}: "${text}": a colon must follow "]"`);
    } else {
      const colon = text.indexOf(':', at);
      field = text.slice(at, colon === -1 ? text.length : colon);
      if (/[[\]]/.test(field)) throw new ConfigError(`${what}: "${text}": brackets go around a whole IPv6 address`);
      at = colon === -1 ? text.length : colon;
    }
    fields.push(field);
    if (at >= text.length) return fields;
    at++; // the colon
  }
}

/** A target "host:port" that fits in an OPEN packet (PROTOCOL.md §4.2). */
export function checkOpenTarget(target: HostPort, what: string): HostPort {
  if (target.host === '') throw new ConfigError(`${what}: the target host is empty`);
  if (Buffer.byteLength(formatHostPort(target)) > MAX_OPEN_TARGET_BYTES) {
    throw new ConfigError(`${what}: the target is longer than ${MAX_OPEN_TARGET_BYTES} bytes`);
  }
  return target;
}

/**
 * Parses ssh's `-L [BIND:]PORT:HOST:HOSTPORT` (IPv6 addresses in brackets; a BIND of `*` or
 * nothing: every interface; none at all: DEFAULT_BIND_HOST). Port 0 listens on any free port.
 * Throws ConfigError with a one-line reason.
 */
export function parseLocalForward(text: string): LocalForward {
  return parseForwardFields(text, '-L');
}

/** -L's and -R's common form, [BIND:]PORT:HOST:HOSTPORT, for `flag`'s messages. */
function parseForwardFields(text: string, flag: string): LocalForward & { target: HostPort } {
  const what = `${flag} ${text}`;
  const fields = splitColonFields(text.trim(), what);
  if (fields.length !== 3 && fields.length !== 4) {
    throw new ConfigError(`${what}: expected [BIND:]PORT:HOST:HOSTPORT (IPv6 addresses in brackets)`);
  }
  const [bind, port, host, hostPort] = fields.length === 4 ? fields : [DEFAULT_BIND_HOST, ...fields];
  return {
    listen: listenAddress(bind as string, port as string, what),
    target: checkOpenTarget({ host: host as string, port: parsePort(hostPort as string, `${what}: HOSTPORT`) }, what),
  };
}

/** Parses ssh's `-R [BIND:]PORT:HOST:HOSTPORT`, as parseLocalForward (BIND on sproxy's side). */
export function parseRemoteForward(text: string): RemoteForward {
  return parseForwardFields(text, '-R');
}

/**
 * Parses ssh's `-D [BIND:]PORT` (a BIND of `*` or nothing: every interface; none at all:
 * DEFAULT_BIND_HOST). Throws ConfigError with a one-line reason.
 */
export function parseDynamicForward(text: string): DynamicForward {
  const what = `-D ${text}`;
  const fields = splitColonFields(text.trim(), what);
  if (fields.length !== 1 && fields.length !== 2) throw new ConfigError(`${what}: expected [BIND:]PORT (an IPv6 address in brackets)`);
  const [bind, port] = fields.length === 2 ? fields : [DEFAULT_BIND_HOST, ...fields];
  return { listen: listenAddress(bind as string, port as string, what) };
}

/** A forward's BIND and PORT: `*` or nothing binds every interface; port 0 any free port. */
function listenAddress(bind: string, port: string, what: string): HostPort {
  return { host: bind === '' || bind === '*' ? ALL_INTERFACES : bind, port: parsePort(port, `${what}: PORT`, true) };
}

/**
 * Parses Tcpipe's `--ports [BIND:]PORT,PORT...`: each port listened on (on BIND, loopback by
 * default) and carried to the same port on sproxy's target host. Throws ConfigError.
 */
export function parsePortList(text: string): LocalForward[] {
  const what = `--ports ${text}`;
  const fields = splitColonFields(text.trim(), what);
  if (fields.length > 2) throw new ConfigError(`${what}: expected [BIND:]PORT,PORT...`);
  const [bind, list] = fields.length === 2 ? fields : [DEFAULT_BIND_HOST, ...fields];
  return (list as string).split(',').map((port) => {
    const listen = listenAddress(bind as string, port, what);
    if (listen.port === 0) throw new ConfigError(`${what}: port 0 has no same port on the target`);
    return { listen, target: { host: '', port: listen.port } };
  });
}

/** Throws ConfigError when two forwards would listen on the same address and port (port 0 aside). */
export function checkDistinctListeners(forwards: ReadonlyArray<{ listen: HostPort }>): void {
  const seen = new Set<string>();
  for (const { listen } of forwards) {
    if (listen.port === 0) continue;
    const key = formatHostPort(listen);
    if (seen.has(key)) throw new ConfigError(`two forwards listen on ${key}`);
    seen.add(key);
  }
}
