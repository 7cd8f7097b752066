import { once } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import { describe, expect, it } from 'vitest';
import { AuthenticationError } from '../../../common/support/errors.js';
import { dialLink, isTlsSocket, tlsAuthenticationFailure } from '../../../common/transport/dial-link.js';
import { directReadsOf } from '../../../common/transport/direct-reads.js';
import { createLinkServer } from '../../../common/transport/link-server.js';
import { derivePsk, LINK_CIPHERS, LINK_SOCKET_HIGH_WATER_BYTES } from '../../../common/transport/tls-psk.js';
import { useCleanup } from '../../helpers/cleanup.js';

const cleanup = useCleanup();

const SECRET = Buffer.from('transport test secret, long enough');
const OTHER_SECRET = Buffer.from('another secret, just as long as that');

interface LinkServerRecord {
  port: number;
  links: Duplex[];
  authFailures: string[];
  /** Resolves with the next authentication failure's reason. */
  nextAuthFailure(): Promise<string>;
  /** Resolves with the next link handed over. */
  nextLink(): Promise<Duplex>;
}

async function startLinkServer(secret: Buffer | null): Promise<LinkServerRecord> {
  const links: Duplex[] = [];
  const authFailures: string[] = [];
  const waiters: { link: Array<(link: Duplex) => void>; auth: Array<(reason: string) => void> } = { link: [], auth: [] };
  const server: Server = createLinkServer(
    { secret, handshakeTimeoutMs: 5000, maxUnauthenticated: 16, pendingAfterHandshake: () => 0 },
    {
      onLink: (socket) => {
        links.push(socket);
        cleanup(() => socket.destroy());
        waiters.link.shift()?.(socket);
      },
      onAuthFailure: (_peer, reason) => {
        authFailures.push(reason);
        waiters.auth.shift()?.(reason);
      },
      onSilent: () => {},
      onConnection: () => true,
      onLimit: () => {},
    },
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanup(() => new Promise((resolve) => server.close(resolve)));
  return {
    port: (server.address() as AddressInfo).port,
    links,
    authFailures,
    nextAuthFailure: () => new Promise((resolve) => waiters.auth.push(resolve)),
    nextLink: () => new Promise((resolve) => waiters.link.push(resolve)),
  };
}

function dial(port: number, secret: Buffer | null): Duplex {
  const socket = dialLink('127.0.0.1', port, secret);
  cleanup(() => socket.destroy());
  return socket;
}

/** The error that ends a dial, or null when it is ready first (TLS handshake done or TCP connected). */
function dialOutcome(socket: Duplex): Promise<Error | null> {
  return new Promise((resolve) => {
    socket.once(isTlsSocket(socket) ? 'secureConnect' : 'connect', () => resolve(null));
    socket.once('error', (error) => resolve(error));
  });
}

describe(`link sockets on Node ${process.version}`, () => {
  it.each([
    ['plain', null],
    ['TLS', SECRET],
  ] as const)('%s: both ends have the buffer levels set, not Node\'s default, and read directly', async (_kind, secret) => {
    const server = await startLinkServer(secret);
    const accepted = server.nextLink();
    const socket = dial(server.port, secret);
    expect(await dialOutcome(socket)).toBeNull();
    // The plain link speaks first (HELLO) before the server hands it over.
    if (secret === null) socket.write(Buffer.alloc(1));
    const far = await accepted;
    for (const end of [socket, far]) {
      expect(end.writableHighWaterMark).toBe(LINK_SOCKET_HIGH_WATER_BYTES);
      expect(end.readableHighWaterMark).toBe(LINK_SOCKET_HIGH_WATER_BYTES);
      // The link's frames come without the stream layer (direct-reads.ts), TLS records too.
      expect(directReadsOf(end)).toBeDefined();
    }
  });
});

describe(`TLS authentication on Node ${process.version} (OpenSSL ${process.versions.openssl})`, () => {
  it('the same secret: the handshake completes and the server hands the link over', async () => {
    const server = await startLinkServer(SECRET);
    const accepted = server.nextLink();
    const socket = dial(server.port, SECRET);
    expect(await dialOutcome(socket)).toBeNull();
    await accepted;
    expect(server.authFailures).toEqual([]);
  });

  it('a wrong secret: each side names the cause, whatever words its OpenSSL uses', async () => {
    const server = await startLinkServer(SECRET);
    const refused = server.nextAuthFailure();
    const socket = dial(server.port, OTHER_SECRET);
    const error = await dialOutcome(socket);
    expect(error).not.toBeNull();
    const failure = tlsAuthenticationFailure(socket, error as Error);
    expect(failure).toBeInstanceOf(AuthenticationError);
    expect(failure?.code).toBe('ETCP_ERR_AUTH');
    expect(failure?.message).toMatch(/^TLS authentication with sproxy failed: our keys differ \(is the same shared secret given to both\?\) \[TLS: .+\]$/);
    expect(failure?.cause).toBe(error);
    expect(await refused).toMatch(/^the client's key does not match this sproxy's secret \(is the same shared secret given to both\?\) \[TLS: .+\]$/);
    expect(server.links).toEqual([]);
  });

  it('a server that is not TLS at all (a captive portal) is no authentication failure', async () => {
    const portalSockets: Socket[] = [];
    const portal = createServer((socket: Socket) => {
      portalSockets.push(socket);
      socket.on('error', () => {});
      socket.end('HTTP/1.1 302 Found\r\nLocation: http://portal.example/\r\n\r\n');
    });
    portal.listen(0, '127.0.0.1');
    await once(portal, 'listening');
    cleanup(() => {
      portalSockets.forEach((socket) => socket.destroy());
      return new Promise((resolve) => portal.close(resolve));
    });
    const socket = dial((portal.address() as AddressInfo).port, SECRET);
    const error = await dialOutcome(socket);
    expect(error).not.toBeNull();
    // A TLS error (the reply is no TLS record), but before our key was used.
    expect((error as NodeJS.ErrnoException).code).toMatch(/^ERR_SSL_/);
    expect(tlsAuthenticationFailure(socket, error as Error)).toBeNull();
  });

  it('a client with another PSK identity is told apart from a wrong key', async () => {
    const server = await startLinkServer(SECRET);
    const refused = server.nextAuthFailure();
    const socket = tlsConnect({
      host: '127.0.0.1',
      port: server.port,
      ciphers: LINK_CIPHERS,
      minVersion: 'TLSv1.2',
      maxVersion: 'TLSv1.2',
      pskCallback: () => ({ psk: derivePsk(SECRET), identity: 'someone-else/9' }),
      checkServerIdentity: () => undefined,
    });
    cleanup(() => socket.destroy());
    socket.on('error', () => {});
    expect(await refused).toMatch(/^the client offered the PSK identity "someone-else\/9", not "eternal-tcp\/1"/);
  });

  it('a TLS client that offers no PSK suite fails before the key exchange, and the server says so', async () => {
    const server = await startLinkServer(SECRET);
    const refused = server.nextAuthFailure();
    // An ordinary HTTPS client: certificate suites only.
    const socket = tlsConnect({ host: '127.0.0.1', port: server.port, rejectUnauthorized: false, servername: 'localhost' });
    cleanup(() => socket.destroy());
    socket.on('error', () => {});
    expect(await refused).toMatch(/^TLS handshake failed before the key exchange \(not an eternal-tcp cproxy\?\) \[TLS: .+\]$/);
  });
});
