import { hkdfSync } from 'node:crypto';
import { ConfigError } from '../support/errors.js';
import { describeError } from '../support/logger.js';

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
export const TLS_VERSION = 'TLSv1.2';

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

/**
 * Both stream buffer levels of every link socket, set rather than inherited: Node 22 raised the
 * default from 16 KiB to 64 KiB. The link holds session packets back by its own mark
 * (EngineConfig.linkWriteHighWaterBytes, 128 KiB); this one only decides when the socket asks
 * for 'drain', which the link waits for while it is over its own mark. 16 KiB is what every
 * figure before Node 22 was measured with, and a TLS record's largest plaintext.
 */
export const LINK_SOCKET_HIGH_WATER_BYTES = 16 * 1024;

/**
 * Node passes `highWaterMark` on to the stream of the socket that net.connect, tls.connect and
 * new TLSSocket make (and net.createServer to the sockets it accepts); @types/node 20 lists it
 * only for the server.
 */
export type WithHighWaterMark<T> = T & { highWaterMark: number };

/**
 * True for an error OpenSSL raised (an alert from the peer, a record that failed to decrypt), as
 * opposed to one of the socket (a reset, a timeout). Node gives every OpenSSL error its `library`
 * and `reason` and an ERR_SSL_ code; the reason's words change between OpenSSL versions (Node 20
 * says "sslv3 alert bad record mac" where 24 says "ssl/tls alert bad record mac"), so they are
 * only shown, never matched.
 */
export function isTlsProtocolError(error: Error): boolean {
  const { library, code } = error as Error & { library?: unknown; code?: unknown };
  return typeof library === 'string' || (typeof code === 'string' && code.startsWith('ERR_SSL_'));
}

/** OpenSSL's own short words for a TLS error ("decryption failed or bad record mac"), or its message. */
export function tlsReason(error: Error): string {
  const { reason } = error as Error & { reason?: unknown };
  return typeof reason === 'string' && reason !== '' ? reason : describeError(error);
}

