import { hkdfSync } from 'node:crypto';
import { connect as netConnect, createServer as netCreateServer, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, createSecureContext, TLSSocket, type TLSSocketOptions } from 'node:tls';
import type { Duplex } from 'node:stream';
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
/** Shortest secret accepted, in bytes: short passphrases are guessable offline from a recorded handshake. */
export const MIN_SECRET_BYTES = 16;

const TLS_VERSION = 'TLSv1.2'; // Node supports TLS-PSK in TLS 1.2 only

/** The TLS PSK: the secret stretched and bound to this use by HKDF-SHA256. */
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
  if (secret === null) return netConnect({ host, port, noDelay: true });
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

/** A dial that failed in the TLS handshake itself: the shared secrets differ (or one side has none). */
export function tlsAuthenticationFailure(error: Error): AuthenticationError | null {
  const code = (error as NodeJS.ErrnoException).code ?? '';
  if (!code.startsWith('ERR_SSL')) return null;
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
  /** A connection failed to authenticate (TLS handshake failure or timeout, or no TLS at all). */
  onAuthFailure(peer: string, reason: string): void;
  /**
   * A TCP connection arrived, before any handshake. Return false to refuse it at once (the
   * caller's limit on unauthenticated connections).
   */
  onConnection(socket: Socket, peer: string): boolean;
}

/** First byte of every TLS connection: a handshake record. */
const TLS_HANDSHAKE_RECORD = 0x16;

/**
 * The server side of dialLink. With a secret, each connection must open with a TLS handshake that
 * completes within `handshakeTimeoutMs`; a peer that speaks the plain protocol instead is told why
 * it is refused, in a plain GOAWAY, so that its user sees the reason rather than a bare reset.
 */
export function createLinkServer(secret: Buffer | null, handshakeTimeoutMs: number, handlers: LinkServerHandlers): Server {
  const peerOf = (socket: Socket): string =>
    socket.remoteAddress?.includes(':') === true ? `[${socket.remoteAddress}]:${socket.remotePort}` : `${socket.remoteAddress}:${socket.remotePort}`;
  const psk = secret === null ? null : derivePsk(secret);
  const secureContext = createSecureContext({ ciphers: LINK_CIPHERS, minVersion: TLS_VERSION, maxVersion: TLS_VERSION });
  return netCreateServer({ noDelay: true }, (socket) => {
    const peer = peerOf(socket);
    if (!handlers.onConnection(socket, peer)) {
      socket.destroy();
      return;
    }
    if (psk === null) {
      handlers.onLink(socket, peer, socket);
      return;
    }
    const timer = setTimeout(() => {
      handlers.onAuthFailure(peer, `no TLS handshake within ${handshakeTimeoutMs} ms`);
      socket.destroy();
    }, handshakeTimeoutMs);
    socket.on('error', () => {}); // reported through the TLS socket or the timer
    socket.once('close', () => clearTimeout(timer));
    socket.once('readable', () => {
      const first = socket.read(1) as Buffer | null;
      if (first === null) return;
      socket.unshift(first);
      if (first[0] !== TLS_HANDSHAKE_RECORD) {
        clearTimeout(timer);
        handlers.onAuthFailure(peer, 'spoke the plain protocol; this sproxy requires TLS with the shared secret');
        socket.end(plainGoAway(GoAwayCode.Authentication, 'sproxy requires TLS with a shared secret: give cproxy the same --secret-file'));
        return;
      }
      // Node takes pskCallback here as in tls.createServer; @types/node does not list it.
      const options: TLSSocketOptions & { pskCallback: (socket: TLSSocket, identity: string) => Buffer | null } = {
        isServer: true,
        secureContext,
        pskCallback: (_socket, identity) => (identity === PSK_IDENTITY ? psk : null),
      };
      const tlsSocket = new TLSSocket(socket, options);
      let authenticated = false;
      tlsSocket.once('secure', () => {
        authenticated = true;
        clearTimeout(timer);
        handlers.onLink(tlsSocket, peer, socket);
      });
      tlsSocket.on('error', (error) => {
        if (authenticated) return; // the link reports its own errors
        clearTimeout(timer);
        handlers.onAuthFailure(peer, describeError(error));
        tlsSocket.destroy();
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
