import { getDiffieHellman } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect, createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { describe, expect, it } from 'vitest';
import { AuthenticationError } from '../../../common/support/errors.js';
import { dialLink, isTlsSocket, tlsAuthenticationFailure } from '../../../common/transport/dial-link.js';
import { directReadsOf } from '../../../common/transport/direct-reads.js';
import { createLinkServer } from '../../../common/transport/link-server.js';
import { clientIdFromServerName, routingServerName } from '../../../common/transport/routing-name.js';
import {
  derivePsk,
  dhParamsPem,
  isTlsProtocolError,
  DHE_AES_GCM_CIPHER,
  ECDHE_CHACHA_CIPHER,
  LINK_CIPHERS,
  LINK_DH_BITS,
  linkDhParams,
  LINK_SOCKET_HIGH_WATER_BYTES,
  preferredLinkCipher,
  PSK_IDENTITY,
  serverLinkCiphers,
} from '../../../common/transport/tls-psk.js';
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

describe('the routing name in the ClientHello', () => {
  it("names the dialing client's id, which a balancer reads before anything is decrypted", async () => {
    const server = await startLinkServer(SECRET);
    const accepted = server.nextLink();
    const clientId = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
    const socket = dialLink('127.0.0.1', server.port, SECRET, clientId);
    cleanup(() => socket.destroy());
    expect(await dialOutcome(socket)).toBeNull();
    const far = (await accepted) as TLSSocket;
    expect(far.servername).toBe('00112233445566778899aabbccddeeff.eternal-tcp.invalid');
    expect(clientIdFromServerName(far.servername as string)?.equals(clientId)).toBe(true);
  });

  it('round-trips every client id, and reads no id from other names', () => {
    const id = Buffer.from('ffeeddccbbaa99887766554433221100', 'hex');
    expect(routingServerName(id)).toBe('ffeeddccbbaa99887766554433221100.eternal-tcp.invalid');
    // One DNS label: at most 63 characters.
    expect(routingServerName(id).split('.')[0]?.length).toBeLessThanOrEqual(63);
    for (const name of ['vps.example.net', 'xyz.eternal-tcp.invalid', '.eternal-tcp.invalid', 'ABCD.eternal-tcp.invalid']) expect(clientIdFromServerName(name)).toBeNull();
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

/** A TLS client as an earlier cproxy (or another order of preference) would dial, with the right key. */
function dialWithCiphers(port: number, ciphers: string): TLSSocket {
  const socket = tlsConnect({
    host: '127.0.0.1',
    port,
    ciphers,
    minVersion: 'TLSv1.2',
    maxVersion: 'TLSv1.2',
    pskCallback: () => ({ psk: derivePsk(SECRET), identity: PSK_IDENTITY }),
    checkServerIdentity: () => undefined,
  });
  cleanup(() => socket.destroy());
  return socket;
}

/** A TLS-PSK server with our key but other parameters: an sproxy of an earlier build, or a weak one. */
async function startOtherServer(options: { ciphers: string; dhparam?: string }): Promise<number> {
  const server = createTlsServer(
    { ...options, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', pskCallback: (_socket, identity) => (identity === PSK_IDENTITY ? derivePsk(SECRET) : null) },
    (socket) => {
      socket.on('error', () => {});
      cleanup(() => socket.destroy());
    },
  );
  server.on('tlsClientError', () => {});
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanup(() => new Promise((resolve) => server.close(resolve)));
  return (server.address() as AddressInfo).port;
}

describe(`the negotiated suite on Node ${process.version} (OpenSSL ${process.versions.openssl})`, () => {
  const preferred = preferredLinkCipher();
  const other = preferred === DHE_AES_GCM_CIPHER ? ECDHE_CHACHA_CIPHER : DHE_AES_GCM_CIPHER;
  /** The key exchange each suite must have used, as the client reports it. */
  const KEY_EXCHANGE: Record<string, object> = {
    [DHE_AES_GCM_CIPHER]: { type: 'DH', size: LINK_DH_BITS },
    [ECDHE_CHACHA_CIPHER]: { type: 'ECDH', name: 'X25519' },
  };

  it(`two current ends: TLS 1.2 and this OpenSSL's preferred suite (${preferred}), on both ends`, async () => {
    const server = await startLinkServer(SECRET);
    const accepted = server.nextLink();
    const socket = dial(server.port, SECRET);
    expect(await dialOutcome(socket)).toBeNull();
    const far = await accepted;
    if (!isTlsSocket(socket) || !isTlsSocket(far)) throw new Error('expected TLS sockets at both ends');
    for (const end of [socket, far]) {
      expect(end.getProtocol()).toBe('TLSv1.2');
      expect(end.getCipher().name).toBe(preferred);
    }
    // Only the client side reports the key exchange (Node gives the server an empty answer).
    expect(socket.getEphemeralKeyInfo()).toMatchObject(KEY_EXCHANGE[preferred] ?? {});
  });

  it.each([DHE_AES_GCM_CIPHER, ECDHE_CHACHA_CIPHER])('a client offering only %s gets a link on it, with its key exchange', async (cipher) => {
    // ECDHE-PSK-CHACHA20-POLY1305 alone is what a cproxy of an earlier build offers.
    const server = await startLinkServer(SECRET);
    const accepted = server.nextLink();
    const socket = dialWithCiphers(server.port, cipher);
    await once(socket, 'secureConnect');
    await accepted;
    expect(socket.getCipher().name).toBe(cipher);
    expect(socket.getEphemeralKeyInfo()).toMatchObject(KEY_EXCHANGE[cipher] ?? {});
    expect(server.authFailures).toEqual([]);
  });

  it('a client that lists the other suite first still gets the preferred one: sproxy follows its own order', async () => {
    const server = await startLinkServer(SECRET);
    const accepted = server.nextLink();
    const socket = dialWithCiphers(server.port, `${other}:${preferred}`);
    await once(socket, 'secureConnect');
    await accepted;
    expect(socket.getCipher().name).toBe(preferred);
  });

  it(`dialLink against an sproxy of an earlier build (${ECDHE_CHACHA_CIPHER} only) gets a link on that suite`, async () => {
    const port = await startOtherServer({ ciphers: ECDHE_CHACHA_CIPHER });
    const socket = dial(port, SECRET);
    expect(await dialOutcome(socket)).toBeNull();
    if (!isTlsSocket(socket)) throw new Error('expected a TLS socket');
    expect(socket.getCipher().name).toBe(ECDHE_CHACHA_CIPHER);
  });

  it('dialLink refuses a server whose DH group is under 3072 bits, before our key is used (no authentication failure)', async () => {
    // RFC 3526 group 14, 2048 bits: what OpenSSL's security level 3 rules out.
    const port = await startOtherServer({ ciphers: DHE_AES_GCM_CIPHER, dhparam: dhParamsPem('modp14') });
    const socket = dial(port, SECRET);
    const error = await dialOutcome(socket);
    expect(error).not.toBeNull();
    expect(isTlsProtocolError(error as Error)).toBe(true);
    expect(tlsAuthenticationFailure(socket, error as Error)).toBeNull();
  });

  it.each([
    ['3.0.19', ECDHE_CHACHA_CIPHER],
    ['3.0.13+quic', ECDHE_CHACHA_CIPHER],
    ['3.1.0', DHE_AES_GCM_CIPHER],
    ['3.5.8', DHE_AES_GCM_CIPHER],
    ['4.0.0', DHE_AES_GCM_CIPHER],
  ])('with OpenSSL %s sproxy prefers %s, and offers both under security level 3', (version, expected) => {
    expect(preferredLinkCipher(version)).toBe(expected);
    const offered = serverLinkCiphers(version).split(':');
    expect(offered[0]).toBe(expected);
    expect([...offered].sort()).toEqual([DHE_AES_GCM_CIPHER, ECDHE_CHACHA_CIPHER, '@SECLEVEL=3'].sort());
    expect(LINK_CIPHERS.split(':')).toEqual([DHE_AES_GCM_CIPHER, ECDHE_CHACHA_CIPHER, '@SECLEVEL=3']);
  });

  it("linkDhParams is RFC 3526 group 15 as PKCS#3 DER in PEM, byte for byte", () => {
    const pem = linkDhParams();
    const lines = pem.trim().split('\n');
    expect(lines[0]).toBe('-----BEGIN DH PARAMETERS-----');
    expect(lines.at(-1)).toBe('-----END DH PARAMETERS-----');
    expect(lines.slice(1, -1).every((line) => line.length <= 64)).toBe(true);
    const der = Buffer.from(lines.slice(1, -1).join(''), 'base64');
    const prime = getDiffieHellman('modp15').getPrime();
    expect(prime.length * 8).toBe(LINK_DH_BITS);
    expect(
      Buffer.concat([
        Buffer.from('30820188', 'hex'), // SEQUENCE, 392 bytes follow
        Buffer.from('0282018100', 'hex'), // INTEGER, 385 bytes: a zero byte (the prime's top bit is set), then the prime
        prime,
        Buffer.from('020102', 'hex'), // INTEGER, 1 byte: the generator, 2
      ]).equals(der),
    ).toBe(true);
    // The group's published first bytes: 2^3072 - 2^3008 - 1 + ..., whose top 64 bits are all ones.
    expect(prime.subarray(0, 12).toString('hex')).toBe('ffffffffffffffffc90fdaa2');
  });
});
