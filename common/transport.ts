import { hkdfSync } from 'node:crypto';
import { createServer as netCreateServer, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, createSecureContext, TLSSocket, type TLSSocketOptions } from 'node:tls';
import type { Duplex } from 'node:stream';
import { adoptDirectReads, connectWithDirectReads } from './direct-reads.js';
import { AuthenticationError, ConfigError } from './errors.js';
import { describeError } from './logger.js';
import { GoAwayCode, LINK_SESSION_ID, PacketType } from './protocol/constants.js';
import { encodeHeader } from './protocol/header.js';
import { encodeReason } from './protocol/messages.js';

/**
 * How the link is carried: plain TCP, or TLS 1.2 with a pre-shared key derived from a shared
 * secret (docs/SECURITY.md). With a secret, each side proves it knows the secret without sending
 * it, ECDHE gives forward secrecy, and ChaCha20-Poly1305 authenticates and encrypts every record.
 */

/** The one cipher suite offered: ECDHE for forward secrecy, PSK for mutual authentication, AEAD. */
export const LINK_CIPHERS = 'ECDHE-PSK-CHACHA20-POLY1305';
/** PSK identity sent in the clear during the handshake: names the protocol and key derivation, nothing secret. */
export const PSK_IDENTITY = 'eternal-tcp/1';
/**
 * Shortest secret accepted, in bytes. Whoever poses once as sproxy to a cproxy can then test
 * guesses of the secret offline, so a short or guessable one is weak (docs/SECURITY.md).
 */
export const MIN_SECRET_BYTES = 16;

/**
 * TLS 1.2: with ECDHE-PSK a passive eavesdropper learns nothing to test guesses against, and
 * Node's PSK callbacks are built around it (docs/SECURITY.md, "The choice").
 */
const TLS_VERSION = 'TLSv1.2';

/**
 * The TLS PSK: HKDF-SHA256 binds the secret to this use. It adds no work factor: the secret's own
 * randomness is what protects it.
 */
export function derivePsk(secret: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, 'eternal-tcp link psk', 'tls12-psk-v1', 32));
}

/** Checks a secret read from a file or the environment; throws ConfigError with a one-line reason. */
export function validateSecret(secret: Buffer, source: string): Buffer {
  if (secret.length < MIN_SECRET_BYTES) {
    throw new ConfigError(`the secret from ${source} is ${secret.length} bytes; at least ${MIN_SECRET_BYTES} are needed`);
  }
  return secret;
}

/** Opens a link socket to the server: TLS-PSK when there is a secret, plain TCP otherwise. */
export function dialLink(host: string, port: number, secret: Buffer | null): Duplex {
  // Plain TCP: the link reads straight into its decoder. TLS needs the stream, which it decrypts.
  if (secret === null) return connectWithDirectReads({ host, port, noDelay: true });
  const psk = derivePsk(secret);
  const socket = tlsConnect({
    host,
    port,
    ciphers: LINK_CIPHERS,
    minVersion: TLS_VERSION,
    maxVersion: TLS_VERSION,
    pskCallback: () => ({ psk, identity: PSK_IDENTITY }),
    // PSK authenticates the server; there is no certificate to check.
    checkServerIdentity: () => undefined,
  });
  socket.setNoDelay(true);
  return socket;
}

/** True for a socket that must finish a TLS handshake before it carries anything. */
export function isTlsSocket(socket: Duplex): socket is TLSSocket {
  return (socket as Partial<TLSSocket>).encrypted === true;
}

/**
 * TLS errors that mean the two sides do not share the key: the peer could not decrypt our
 * Finished message, or knew no key for our identity. Other TLS errors (an HTTP captive portal, a
 * plain server) are not read as a wrong secret.
 */
const KEY_MISMATCH_CODES = new Set([
  'ERR_SSL_SSLV3_ALERT_BAD_RECORD_MAC',
  'ERR_SSL_DECRYPTION_FAILED_OR_BAD_RECORD_MAC',
  'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE',
  'ERR_SSL_TLSV1_ALERT_DECRYPT_ERROR',
  'ERR_SSL_TLSV1_ALERT_UNKNOWN_PSK_IDENTITY',
]);

/** A dial that failed because the shared secrets differ (or sproxy has one and we do not). */
export function tlsAuthenticationFailure(error: Error): AuthenticationError | null {
  const code = (error as NodeJS.ErrnoException).code ?? '';
  if (!KEY_MISMATCH_CODES.has(code)) return null;
  return new AuthenticationError(
    `TLS authentication with sproxy failed (is the same shared secret given to both?): ${describeError(error)}`,
    { cause: error },
  );
}

export interface LinkServerHandlers {
  /**
   * A connection is ready to carry the protocol (after the TLS handshake, if any). `tcp` is the
   * TCP socket underneath, the one onConnection saw.
   */
  onLink(socket: Duplex, peer: string, tcp: Socket): void;
  /**
   * A connection failed to authenticate: its TLS handshake failed or timed out, it spoke the plain
   * protocol to a server with a secret, or TLS to one without.
   */
  onAuthFailure(peer: string, reason: string): void;
  /** A plain-mode connection sent nothing within the handshake deadline. */
  onSilent(peer: string, reason: string): void;
  /** A TCP connection arrived, before any handshake. Return false to refuse it at once. */
  onConnection(socket: Socket, peer: string): boolean;
  /** A connection was refused because `maxUnauthenticated` were already waiting. */
  onLimit(peer: string, limit: number): void;
}

export interface LinkServerOptions {
  secret: Buffer | null;
  handshakeTimeoutMs: number;
  /**
   * Connections not yet authenticated held at once: those in their TLS handshake plus
   * `pendingAfterHandshake()` (the endpoint's links that have not said HELLO). More are refused.
   */
  maxUnauthenticated: number;
  pendingAfterHandshake: () => number;
}

/** First byte of every TLS connection: a handshake record. */
const TLS_HANDSHAKE_RECORD = 0x16;

/**
 * The server side of dialLink. With a secret, each connection must open with a TLS handshake that
 * completes within `handshakeTimeoutMs`; a peer that speaks the plain protocol instead is told why
 * it is refused, in a plain GOAWAY, so that its user sees the reason rather than a bare reset.
 * Without a secret, a peer that opens with TLS is told nothing (it could not read it) but logged.
 */
export function createLinkServer(options: LinkServerOptions, handlers: LinkServerHandlers): Server {
  const peerOf = (socket: Socket): string =>
    socket.remoteAddress?.includes(':') === true ? `[${socket.remoteAddress}]:${socket.remotePort}` : `${socket.remoteAddress}:${socket.remotePort}`;
  const psk = options.secret === null ? null : derivePsk(options.secret);
  const secureContext = createSecureContext({ ciphers: LINK_CIPHERS, minVersion: TLS_VERSION, maxVersion: TLS_VERSION });
  /** TCP connections whose first bytes or TLS handshake are still awaited. */
  const handshaking = new Set<Socket>();
  return netCreateServer({ noDelay: true }, (socket) => {
    const peer = peerOf(socket);
    if (handshaking.size + options.pendingAfterHandshake() >= options.maxUnauthenticated) {
      handlers.onLimit(peer, options.maxUnauthenticated);
      socket.destroy();
      return;
    }
    if (!handlers.onConnection(socket, peer)) {
      socket.destroy();
      return;
    }
    handshaking.add(socket);
    const refuse = (reason: string, goAway: Buffer | null): void => {
      handlers.onAuthFailure(peer, reason);
      if (goAway === null) {
        socket.destroy();
        return;
      }
      // End gracefully so that the GOAWAY is read, but never hold the socket past a moment.
      socket.end(goAway);
      socket.resume();
      setTimeout(() => socket.destroy(), Math.min(1000, options.handshakeTimeoutMs)).unref();
    };
    const timer = setTimeout(() => {
      if (psk !== null) {
        refuse(`no TLS handshake within ${options.handshakeTimeoutMs} ms`, null);
        return;
      }
      // Without a secret, silence proves nothing about identity: not an authentication failure.
      handlers.onSilent(peer, `nothing received within ${options.handshakeTimeoutMs} ms`);
      socket.destroy();
    }, options.handshakeTimeoutMs);
    socket.on('error', () => {}); // reported through the TLS socket, the link or the timer
    socket.once('close', () => {
      clearTimeout(timer);
      handshaking.delete(socket);
    });
    const handOver = (linkSocket: Duplex): void => {
      clearTimeout(timer);
      handshaking.delete(socket);
      handlers.onLink(linkSocket, peer, socket);
    };
    socket.once('readable', () => {
      const first = socket.read(1) as Buffer | null;
      if (first === null) return;
      socket.unshift(first);
      const speaksTls = first[0] === TLS_HANDSHAKE_RECORD;
      if (psk === null) {
        if (speaksTls) refuse('spoke TLS: this sproxy has no shared secret (give it the same --secret-file as cproxy)', null);
        else {
          adoptDirectReads(socket);
          handOver(socket);
        }
        return;
      }
      if (!speaksTls) {
        clearTimeout(timer);
        refuse(
          'spoke the plain protocol; this sproxy requires TLS with the shared secret',
          plainGoAway(GoAwayCode.Authentication, 'sproxy requires TLS with a shared secret: give cproxy the same --secret-file'),
        );
        return;
      }
      // Node takes pskCallback here as in tls.createServer; @types/node does not list it.
      const tlsOptions: TLSSocketOptions & { pskCallback: (socket: TLSSocket, identity: string) => Buffer | null } = {
        isServer: true,
        secureContext,
        pskCallback: (_socket, identity) => (identity === PSK_IDENTITY ? psk : null),
      };
      const tlsSocket = new TLSSocket(socket, tlsOptions);
      let authenticated = false;
      tlsSocket.once('secure', () => {
        authenticated = true;
        handOver(tlsSocket);
      });
      tlsSocket.on('error', (error) => {
        if (authenticated) return; // the link reports its own errors
        clearTimeout(timer);
        refuse(describeError(error), null);
      });
    });
  });
}

function plainGoAway(code: GoAwayCode, reason: string): Buffer {
  const payload = encodeReason(reason);
  return Buffer.concat([
    encodeHeader({ type: PacketType.GoAway, sessionId: LINK_SESSION_ID, seq: 0, ack: code, length: payload.length }),
    payload,
  ]);
}
