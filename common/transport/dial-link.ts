import type { ConnectionOptions, TLSSocket } from 'node:tls';
import type { TcpNetConnectOpts } from 'node:net';
import type { Duplex } from 'node:stream';
import { AuthenticationError } from '../support/errors.js';
import { connectWithDirectReads, tlsConnectWithDirectReads } from './direct-reads.js';
import { routingServerName } from './routing-name.js';
import {
  derivePsk,
  isTlsProtocolError,
  LINK_CIPHERS,
  LINK_SOCKET_HIGH_WATER_BYTES,
  PSK_IDENTITY,
  TLS_VERSION,
  tlsReason,
  type WithHighWaterMark,
} from './tls-psk.js';

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

/**
 * Opens a link socket to the server: TLS-PSK when there is a secret, plain TCP otherwise.
 * `clientId`: the dialing client's, named in the ClientHello (routing-name.ts) so that a balancer
 * can keep the client on one server; without it, the ClientHello names `host` as usual.
 */
export function dialLink(host: string, port: number, secret: Buffer | null, clientId?: Buffer): Duplex {
  // Either way the link reads straight into its decoder: TCP reads, or TLS's decrypted records.
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
    ...(clientId === undefined ? {} : { servername: routingServerName(clientId) }),
    // OpenSSL asks for the key once the server has chosen the PSK suite (TLS 1.2: at its
    // ServerHelloDone); our Finished, made with it, follows.
    pskCallback: () => {
      noteKeyExchange(socket);
      return { psk, identity: PSK_IDENTITY };
    },
    // PSK authenticates the server; there is no certificate to check.
    checkServerIdentity: () => undefined,
  };
  const socket = tlsConnectWithDirectReads(options);
  socket.setNoDelay(true);
  return socket;
}

/** True for a socket that must finish a TLS handshake before it carries anything. */
export function isTlsSocket(socket: Duplex): socket is TLSSocket {
  return (socket as Partial<TLSSocket>).encrypted === true;
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

