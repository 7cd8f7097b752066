import { hkdfSync } from 'node:crypto';
import { createServer as netCreateServer, type Server, type Socket, type TcpNetConnectOpts } from 'node:net';
import { connect as tlsConnect, createSecureContext, TLSSocket, type ConnectionOptions, type TLSSocketOptions } from 'node:tls';
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
type WithHighWaterMark<T> = T & { highWaterMark: number };

/** Dialed link sockets whose TLS handshake reached the key exchange: they used our key (see below). */
const usedKey = new WeakSet<Duplex>();

/**
 * Records that a dialed socket's handshake has used the shared key: the server chose the PSK
 * suite and OpenSSL asked for our key. A dialer of its own (tests, the library) that
 * authenticates with a key calls this at that point, as dialLink does, so that a failure after
 * it is read as authentication (tlsAuthenticationFailure).
 */
export function noteKeyExchange(socket: Duplex): void {
  usedKey.add(socket);
}

/** Opens a link socket to the server: TLS-PSK when there is a secret, plain TCP otherwise. */
export function dialLink(host: string, port: number, secret: Buffer | null): Duplex {
  // Plain TCP: the link reads straight into its decoder. TLS needs the stream, which it decrypts.
  if (secret === null) {
    const options: WithHighWaterMark<TcpNetConnectOpts> = { host, port, noDelay: true, highWaterMark: LINK_SOCKET_HIGH_WATER_BYTES };
    return connectWithDirectReads(options);
  }
  const psk = derivePsk(secret);
  const options: WithHighWaterMark<ConnectionOptions> = {
    host,
    port,
    ciphers: LINK_CIPHERS,
    minVersion: TLS_VERSION,
    maxVersion: TLS_VERSION,
    highWaterMark: LINK_SOCKET_HIGH_WATER_BYTES,
    // OpenSSL asks for the key once the server has chosen the PSK suite (TLS 1.2: at its
    // ServerHelloDone); our Finished, made with it, follows.
    pskCallback: () => {
      noteKeyExchange(socket);
      return { psk, identity: PSK_IDENTITY };
    },
    // PSK authenticates the server; there is no certificate to check.
    checkServerIdentity: () => undefined,
  };
  const socket = tlsConnect(options);
  socket.setNoDelay(true);
  return socket;
}

/** True for a socket that must finish a TLS handshake before it carries anything. */
export function isTlsSocket(socket: Duplex): socket is TLSSocket {
  return (socket as Partial<TLSSocket>).encrypted === true;
}

/**
 * True for an error OpenSSL raised (an alert from the peer, a record that failed to decrypt), as
 * opposed to one of the socket (a reset, a timeout). Node gives every OpenSSL error its `library`
 * and `reason` and an ERR_SSL_ code; the reason's words change between OpenSSL versions (Node 20
 * says "sslv3 alert bad record mac" where 24 says "ssl/tls alert bad record mac"), so they are
 * only shown, never matched.
 */
function isTlsProtocolError(error: Error): boolean {
  const { library, code } = error as Error & { library?: unknown; code?: unknown };
  return typeof library === 'string' || (typeof code === 'string' && code.startsWith('ERR_SSL_'));
}

/** OpenSSL's own short words for a TLS error ("decryption failed or bad record mac"), or its message. */
export function tlsReason(error: Error): string {
  const { reason } = error as Error & { reason?: unknown };
  return typeof reason === 'string' && reason !== '' ? reason : describeError(error);
}

/**
 * A dial that failed because the shared secrets differ, decided from what the handshake did
 * rather than from OpenSSL's words: a TLS error once our key was in use can only mean that the
 * server could not verify our Finished, or we its (a wrong key either way, or an attacker on the
 * path, which is why the client needs a run of them). A TLS error before that (a plain server,
 * an HTTPS captive portal) and any socket error are not.
 */
export function tlsAuthenticationFailure(socket: Duplex, error: Error): AuthenticationError | null {
  if (!usedKey.has(socket) || !isTlsProtocolError(error)) return null;
  return new AuthenticationError(
    `TLS authentication with sproxy failed: our keys differ (is the same shared secret given to both?) [TLS: ${tlsReason(error)}]`,
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
  return netCreateServer({ noDelay: true, highWaterMark: LINK_SOCKET_HIGH_WATER_BYTES }, (socket) => {
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
      // How far the handshake got: the client's PSK identity comes with its key exchange.
      let offeredIdentity: string | null = null;
      let keyInUse = false;
      // Node takes pskCallback here as in tls.createServer; @types/node does not list it.
      const tlsOptions: WithHighWaterMark<TLSSocketOptions> & {
        pskCallback: (socket: TLSSocket, identity: string) => Buffer | null;
      } = {
        isServer: true,
        secureContext,
        highWaterMark: LINK_SOCKET_HIGH_WATER_BYTES,
        pskCallback: (_socket, identity) => {
          offeredIdentity = identity;
          keyInUse = identity === PSK_IDENTITY;
          return keyInUse ? psk : null;
        },
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
        refuse(describeHandshakeFailure(keyInUse, offeredIdentity, error), null);
      });
    });
  });
}

/**
 * Why a client's TLS handshake failed, from how far it got (see tlsAuthenticationFailure):
 * with our identity and key in use, a TLS error means the client's key differs from ours.
 */
function describeHandshakeFailure(keyInUse: boolean, identity: string | null, error: Error): string {
  if (!isTlsProtocolError(error)) return `the connection failed during the TLS handshake: ${describeError(error)}`;
  if (keyInUse) {
    return `the client's key does not match this sproxy's secret (is the same shared secret given to both?) [TLS: ${tlsReason(error)}]`;
  }
  if (identity !== null) {
    return `the client offered the PSK identity ${JSON.stringify(identity.slice(0, 64))}, not ${JSON.stringify(PSK_IDENTITY)} (another program or version?) [TLS: ${tlsReason(error)}]`;
  }
  return `TLS handshake failed before the key exchange (not an eternal-tcp cproxy?) [TLS: ${tlsReason(error)}]`;
}

function plainGoAway(code: GoAwayCode, reason: string): Buffer {
  const payload = encodeReason(reason);
  return Buffer.concat([
    encodeHeader({ type: PacketType.GoAway, sessionId: LINK_SESSION_ID, seq: 0, ack: code, length: payload.length }),
    payload,
  ]);
}
