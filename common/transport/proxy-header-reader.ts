import { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import { decodeProxyHeader, ProxyCommand, ProxyFamily, type ProxyHeader } from '../protocol/proxy-v2.js';
import { formatHostPort } from './address.js';

/** How reading a PROXY header off a connection ended. */
export type ProxyHeaderOutcome =
  /**
   * A header, then the first bytes of the proxied stream: they are back in the socket's read buffer
   * (unshift), where the TLS layer or adoptDirectReads takes them; `first` is the first of them.
   */
  | { readonly kind: 'stream'; readonly header: ProxyHeader; readonly first: number }
  | { readonly kind: 'invalid'; readonly reason: string }
  /** The peer closed first: after a whole header (`header`), or inside one, or before any byte. */
  | { readonly kind: 'closed'; readonly header: ProxyHeader | null; readonly bytesReceived: number };

const EMPTY = Buffer.alloc(0);

/**
 * Reads the PROXY protocol v2 header (PROTOCOL.md §0.1) that a load balancer sends before the
 * connection's own bytes, and waits for the first of those, so that whoever takes the socket next
 * finds it as it would a direct connection: its first byte readable, nothing of the header left.
 * The header and the first bytes often come in one segment (HAProxy writes the header with the
 * client's first packet when it has it); whatever followed the header goes back with unshift.
 * The bytes held are bounded by the codec (PROXY_V2_MAX_HEADER_BYTES, plus one read).
 */
export class ProxyHeaderReader {
  readonly #socket: Socket;
  readonly #onOutcome: (outcome: ProxyHeaderOutcome) => void;
  /** Everything received while the header is incomplete. */
  #received: Buffer = EMPTY;
  #bytesReceived = 0;
  #header: ProxyHeader | null = null;
  #done = false;

  constructor(socket: Socket, onOutcome: (outcome: ProxyHeaderOutcome) => void) {
    this.#socket = socket;
    this.#onOutcome = onOutcome;
    socket.on('readable', this.#onReadable);
    socket.on('end', this.#onClosed);
    socket.on('close', this.#onClosed);
  }

  /** The header, once read (the stream's first byte may still be awaited). */
  get header(): ProxyHeader | null {
    return this.#header;
  }

  /** Stops reading and reports nothing more (the caller gave up on the connection). */
  stop(): void {
    if (this.#done) return;
    this.#done = true;
    this.#socket.off('readable', this.#onReadable);
    this.#socket.off('end', this.#onClosed);
    this.#socket.off('close', this.#onClosed);
  }

  #finish(outcome: ProxyHeaderOutcome): void {
    if (this.#done) return;
    this.stop();
    this.#onOutcome(outcome);
  }

  readonly #onReadable = (): void => {
    let chunk: Buffer | null;
    while (!this.#done && (chunk = this.#socket.read() as Buffer | null) !== null) {
      this.#bytesReceived += chunk.length;
      if (this.#header === null) {
        this.#received = this.#received.length === 0 ? chunk : Buffer.concat([this.#received, chunk]);
        const decoding = decodeProxyHeader(this.#received);
        if (decoding.status === 'needs-more') continue;
        if (decoding.status === 'invalid') {
          this.#finish({ kind: 'invalid', reason: decoding.reason });
          return;
        }
        this.#header = decoding.header;
        chunk = this.#received.subarray(decoding.header.headerBytes);
        this.#received = EMPTY;
        if (chunk.length === 0) continue;
      }
      this.#socket.unshift(chunk);
      this.#finish({ kind: 'stream', header: this.#header, first: chunk[0] as number });
    }
  };

  readonly #onClosed = (): void => {
    this.#finish({ kind: 'closed', header: this.#header, bytesReceived: this.#bytesReceived });
  };
}

/**
 * The peer a header names: the client's address for a TCP connection proxied on its behalf; null
 * where the connection's own peer stands (LOCAL, the proxy's own connection; UNSPEC, UDP or a unix
 * socket, which HAProxy too leaves to the connection's addresses).
 */
export function proxiedPeer(header: ProxyHeader): string | null {
  if (header.command !== ProxyCommand.Proxy || (header.family !== ProxyFamily.Tcp4 && header.family !== ProxyFamily.Tcp6)) return null;
  const source = header.source;
  return source?.kind === 'ip' ? formatHostPort({ host: source.address, port: source.port }) : null;
}
