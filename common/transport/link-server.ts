import { createServer as netCreateServer, type Server, type Socket } from 'node:net';
import { createSecureContext, TLSSocket, type TLSSocketOptions } from 'node:tls';
import type { Duplex } from 'node:stream';
import { GoAwayCode, LINK_SESSION_ID, PacketType } from '../protocol/constants.js';
import { encodeHeader } from '../protocol/header.js';
import { encodeReason } from '../protocol/messages.js';
import { ProxyCommand } from '../protocol/proxy-v2.js';
import { describeError } from '../support/logger.js';
import { adoptDirectReads } from './direct-reads.js';
import { proxiedPeer, ProxyHeaderReader, type ProxyHeaderOutcome } from './proxy-header-reader.js';
import {
  derivePsk,
  isTlsProtocolError,
  linkDhParams,
  LINK_SOCKET_HIGH_WATER_BYTES,
  PSK_IDENTITY,
  serverLinkCiphers,
  TLS_VERSION,
  tlsReason,
  type WithHighWaterMark,
} from './tls-psk.js';

/**
 * What the handlers are told about each connection. `peer` is the address a PROXY header named
 * (with `proxyProtocol`), once it has been read, and the TCP peer otherwise: onConnection and
 * onLimit, which come before the header, and onProxyHeaderRefused, always get the TCP peer.
 */
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
  /**
   * With `proxyProtocol`: a connection refused for its PROXY header, which was missing, malformed,
   * cut short by a close, or not complete within the handshake deadline.
   */
  onProxyHeaderRefused?(peer: string, reason: string): void;
  /**
   * With `proxyProtocol`: a connection that ended without carrying a link as a load balancer's
   * health check does (opened and closed; a LOCAL header and nothing after it): no warning.
   */
  onHealthCheck?(peer: string, detail: string): void;
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
  /**
   * Every connection must begin with a PROXY protocol v2 header (a load balancer's, such as
   * HAProxy's send-proxy-v2; PROTOCOL.md §0.1), read before the first byte is looked at, within
   * the same deadline and counted against the same limit. Off by default.
   */
  proxyProtocol?: boolean;
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
  // Our order of the suites, not the client's, and the DH group of the DHE one.
  const secureContext = createSecureContext({
    ciphers: serverLinkCiphers(),
    minVersion: TLS_VERSION,
    maxVersion: TLS_VERSION,
    honorCipherOrder: true,
    dhparam: linkDhParams(),
  });
  /** TCP connections whose first bytes or TLS handshake are still awaited. */
  const handshaking = new Set<Socket>();
  return netCreateServer({ noDelay: true, highWaterMark: LINK_SOCKET_HIGH_WATER_BYTES }, (socket) => {
    const tcpPeer = peerOf(socket);
    /** Who the handlers are told of: the TCP peer until a PROXY header names another. */
    let peer = tcpPeer;
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
    /** With proxyProtocol, the header's reader until the stream after the header has begun. */
    let proxyHeader: ProxyHeaderReader | null = null;
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
      if (proxyHeader !== null) {
        const header = proxyHeader.header;
        proxyHeader.stop();
        proxyHeader = null;
        if (header === null) {
          handlers.onProxyHeaderRefused?.(tcpPeer, `no complete PROXY protocol v2 header within ${options.handshakeTimeoutMs} ms`);
          socket.destroy();
          return;
        }
        peer = proxiedPeer(header) ?? tcpPeer;
        if (header.command === ProxyCommand.Local) {
          handlers.onHealthCheck?.(peer, `a LOCAL PROXY header, then nothing within ${options.handshakeTimeoutMs} ms`);
          socket.destroy();
          return;
        }
        // A client's header and nothing after it: the client is silent, as below.
      }
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
    /** The first byte of the link is readable (and still in the socket's buffer): `first`. */
    const startLink = (first: number): void => {
      const speaksTls = first === TLS_HANDSHAKE_RECORD;
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
      // Bytes already in the socket's buffer (the peeked byte, or what followed a PROXY header)
      // are taken by the TLS socket first.
      const tlsSocket = new TLSSocket(socket, tlsOptions);
      let authenticated = false;
      tlsSocket.once('secure', () => {
        authenticated = true;
        // The decrypted records go straight to the link, as on the dialing side.
        adoptDirectReads(tlsSocket);
        handOver(tlsSocket);
      });
      tlsSocket.on('error', (error) => {
        if (authenticated) return; // the link reports its own errors
        clearTimeout(timer);
        refuse(describeHandshakeFailure(keyInUse, offeredIdentity, error), null);
      });
    };
    if (options.proxyProtocol === true) {
      proxyHeader = new ProxyHeaderReader(socket, (outcome) => {
        proxyHeader = null;
        if (outcome.kind === 'stream') {
          peer = proxiedPeer(outcome.header) ?? tcpPeer;
          startLink(outcome.first);
          return;
        }
        clearTimeout(timer);
        reportNoStream(outcome, tcpPeer, handlers);
        socket.destroy();
      });
      return;
    }
    // Reading the first byte has a cost on a TLS link: Node's TLS layer sizes the first buffer of
    // its input ring by the first bytes it is given (the peeked ClientHello: 1 KiB) and reuses it,
    // so it then reads the link 1 KiB and 16 KiB at a time, ~115,000 reads per GB where a socket
    // it reads from the start takes ~25,000 (64 and 16 KiB), some 200 ms of CPU per GB (Node
    // 20-26). Kept: the plain GOAWAY needs the byte, and Node cannot peek without consuming.
    socket.once('readable', () => {
      const first = socket.read(1) as Buffer | null;
      if (first === null) return;
      socket.unshift(first);
      startLink(first[0] as number);
    });
  });
}

/** Tells the handlers of a connection that ended at or just after its PROXY header. */
function reportNoStream(outcome: Exclude<ProxyHeaderOutcome, { kind: 'stream' }>, tcpPeer: string, handlers: LinkServerHandlers): void {
  if (outcome.kind === 'invalid') {
    handlers.onProxyHeaderRefused?.(tcpPeer, `no valid PROXY protocol v2 header: ${outcome.reason}`);
  } else if (outcome.header !== null) {
    handlers.onHealthCheck?.(proxiedPeer(outcome.header) ?? tcpPeer, 'closed after its PROXY header, before the link began');
  } else if (outcome.bytesReceived === 0) {
    handlers.onHealthCheck?.(tcpPeer, 'closed without sending anything');
  } else {
    handlers.onProxyHeaderRefused?.(tcpPeer, `closed ${outcome.bytesReceived} bytes into its PROXY protocol v2 header`);
  }
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
