import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { encodeProxyHeader, ProxyCommand, ProxyFamily, type ProxyHeaderFields } from '../../../common/protocol/proxy-v2.js';
import { dialLink, isTlsSocket } from '../../../common/transport/dial-link.js';
import { adoptDirectReads, readChunks } from '../../../common/transport/direct-reads.js';
import { createLinkServer } from '../../../common/transport/link-server.js';
import { proxiedPeer, ProxyHeaderReader, type ProxyHeaderOutcome } from '../../../common/transport/proxy-header-reader.js';
import { useCleanup } from '../../helpers/cleanup.js';

const cleanup = useCleanup();

const CLIENT: ProxyHeaderFields = {
  command: ProxyCommand.Proxy,
  family: ProxyFamily.Tcp6,
  source: { kind: 'ip', address: '2001:db8::7', port: 40000 },
  destination: { kind: 'ip', address: '2001:db8::1', port: 6200 },
  tlvs: [{ type: 0x01, value: Buffer.from('h2') }],
};
const LOCAL: ProxyHeaderFields = { command: ProxyCommand.Local, family: ProxyFamily.Unspec, source: null, destination: null, tlvs: [] };
const HEADER = encodeProxyHeader(CLIENT);

async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanup(() => new Promise((resolve) => server.close(resolve)));
  return (server.address() as AddressInfo).port;
}

/** A client connection and the server's end of it, read by a ProxyHeaderReader from the accept on. */
async function readerPair(): Promise<{ client: Socket; accepted: Socket; reader: ProxyHeaderReader; outcome: Promise<ProxyHeaderOutcome> }> {
  let resolveAccepted: (value: { accepted: Socket; reader: ProxyHeaderReader; outcome: Promise<ProxyHeaderOutcome> }) => void = () => {};
  const ready = new Promise<{ accepted: Socket; reader: ProxyHeaderReader; outcome: Promise<ProxyHeaderOutcome> }>((resolve) => (resolveAccepted = resolve));
  const port = await listen(
    createServer((accepted) => {
      cleanup(() => accepted.destroy());
      accepted.on('error', () => {});
      let reader: ProxyHeaderReader | undefined;
      const outcome = new Promise<ProxyHeaderOutcome>((resolve) => (reader = new ProxyHeaderReader(accepted, resolve)));
      resolveAccepted({ accepted, reader: reader as ProxyHeaderReader, outcome });
    }),
  );
  const client = connect({ host: '127.0.0.1', port });
  cleanup(() => client.destroy());
  client.on('error', () => {});
  await once(client, 'connect');
  return { client, ...(await ready) };
}

/** Everything `socket` reads until `bytes` have come, through its direct reads (the plain link's path). */
function collect(socket: Socket, bytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let received = 0;
  return new Promise((resolve) => {
    readChunks(socket, (chunk) => {
      chunks.push(Buffer.from(chunk));
      received += chunk.length;
      if (received >= bytes) resolve(Buffer.concat(chunks));
    });
  });
}

describe('ProxyHeaderReader', () => {
  it('hands on the bytes that came with the header, in the same segment, ahead of the rest', async () => {
    const { client, accepted, outcome } = await readerPair();
    const stream = Buffer.from('the first bytes of the link, and more');
    client.write(Buffer.concat([HEADER, stream.subarray(0, 10)]));
    expect(await outcome).toEqual({ kind: 'stream', header: { ...CLIENT, headerBytes: HEADER.length }, first: stream[0] });
    expect(adoptDirectReads(accepted)).toBe(true);
    const received = collect(accepted, stream.length);
    client.write(stream.subarray(10));
    expect((await received).toString()).toBe(stream.toString());
  });

  it('takes a header that comes a byte at a time, and waits for the first byte after it', async () => {
    const { client, accepted, reader, outcome } = await readerPair();
    let outcomeSeen = false;
    void outcome.then(() => (outcomeSeen = true));
    for (let offset = 0; offset < HEADER.length; offset++) {
      // After the reader's own listener: the byte has been read when this one runs.
      const read = once(accepted, 'readable');
      client.write(HEADER.subarray(offset, offset + 1));
      await read;
      expect(reader.header, `after byte ${offset}`).toEqual(offset === HEADER.length - 1 ? { ...CLIENT, headerBytes: HEADER.length } : null);
    }
    expect(outcomeSeen).toBe(false);
    client.write(Buffer.from([0x16, 0x03]));
    expect(await outcome).toMatchObject({ kind: 'stream', first: 0x16 });
    expect(accepted.read(2)).toEqual(Buffer.from([0x16, 0x03]));
  });

  it.each([
    ['before any byte', Buffer.alloc(0), { kind: 'closed', header: null, bytesReceived: 0 }],
    ['inside the header', HEADER.subarray(0, 20), { kind: 'closed', header: null, bytesReceived: 20 }],
    ['after a LOCAL header', encodeProxyHeader(LOCAL), { kind: 'closed', header: { ...LOCAL, headerBytes: 16 }, bytesReceived: 16 }],
  ])('says so when the peer closes %s', async (_when, bytes, expected) => {
    const { client, outcome } = await readerPair();
    client.end(bytes);
    expect(await outcome).toEqual(expected);
  });

  it('says a connection is invalid at its first byte off the signature, while it stays open', async () => {
    const { client, outcome } = await readerPair();
    client.write(Buffer.from([0x16, 0x03, 0x01]));
    expect(await outcome).toEqual({ kind: 'invalid', reason: 'no PROXY protocol v2 signature (first bytes: 160301)' });
  });

  it('names the client of a TCP header, and no one for LOCAL, UNSPEC or a unix socket', () => {
    expect(proxiedPeer({ ...CLIENT, headerBytes: 0 })).toBe('[2001:db8::7]:40000');
    const tcp4 = { ...CLIENT, family: ProxyFamily.Tcp4, source: { kind: 'ip', address: '192.0.2.7', port: 1 } as const, headerBytes: 0 };
    expect(proxiedPeer(tcp4)).toBe('192.0.2.7:1');
    expect(proxiedPeer({ ...tcp4, family: ProxyFamily.Udp4 })).toBeNull();
    expect(proxiedPeer({ ...LOCAL, headerBytes: 16 })).toBeNull();
    expect(proxiedPeer({ ...LOCAL, command: ProxyCommand.Proxy, headerBytes: 16 })).toBeNull();
    expect(proxiedPeer({ ...CLIENT, family: ProxyFamily.UnixStream, source: { kind: 'unix', path: '/run/x' }, headerBytes: 0 })).toBeNull();
  });
});

const SECRET = Buffer.from('proxy header test secret, long enough');

/** How the balancer sends the header: in one write with the link's first bytes, or alone before them. */
type Delivery = 'with the first bytes' | 'before the first bytes';

/**
 * A load balancer in miniature, relaying each dialed link to the link server after `header`. With
 * the first bytes: it waits for the link's first bytes (a ClientHello, or a plain packet) and
 * writes the header and them in one write, as HAProxy does when the client has spoken first.
 * Before them: it writes the header alone and holds the link's bytes until `headerRead` resolves.
 */
async function startBalancer(linkServerPort: number, header: Buffer, delivery: Delivery, headerRead: () => Promise<void>): Promise<number> {
  return listen(
    createServer((client) => {
      cleanup(() => client.destroy());
      client.pause();
      const server = connect({ host: '127.0.0.1', port: linkServerPort }, () => {
        void (async () => {
          if (delivery === 'before the first bytes') {
            server.write(header);
            await headerRead();
          } else {
            const first = once(client, 'data');
            client.resume();
            const [chunk] = (await first) as [Buffer];
            client.pause();
            server.write(Buffer.concat([header, chunk]));
          }
          client.pipe(server).pipe(client);
        })();
      });
      cleanup(() => server.destroy());
    }),
  );
}

/** Resolves once `socket` has read `bytes` from the kernel and its 'readable' handlers have run. */
async function bytesRead(socket: Socket, bytes: number): Promise<void> {
  while (socket.bytesRead < bytes) await new Promise((resolve) => setImmediate(resolve));
}

describe('createLinkServer with proxyProtocol', () => {
  it.each([
    ['TLS', SECRET, 'with the first bytes'],
    ['TLS', SECRET, 'before the first bytes'],
    ['plain', null, 'with the first bytes'],
    ['plain', null, 'before the first bytes'],
  ] as const)("%s, the header %s: the link starts from the bytes after it, and its peer is the header's client", async (_kind, secret, delivery) => {
    const links: Array<{ socket: Duplex; peer: string }> = [];
    let accepted: Socket | null = null;
    let readAlone: number | null = null;
    const headerRead = async (): Promise<void> => {
      await bytesRead(accepted as Socket, HEADER.length);
      readAlone = (accepted as Socket).bytesRead;
    };
    const linked = new Promise<void>((resolve) => {
      const server = createLinkServer(
        { secret, handshakeTimeoutMs: 5000, maxUnauthenticated: 16, pendingAfterHandshake: () => 0, proxyProtocol: true },
        {
          onLink: (socket, peer) => {
            cleanup(() => socket.destroy());
            links.push({ socket, peer });
            resolve();
          },
          onAuthFailure: (peer, reason) => expect.fail(`auth failure of ${peer}: ${reason}`),
          onSilent: () => {},
          onConnection: (socket) => {
            accepted = socket;
            return true;
          },
          onLimit: () => {},
          onProxyHeaderRefused: (peer, reason) => expect.fail(`refused ${peer}: ${reason}`),
        },
      );
      void listen(server).then(async (port) => {
        const link = dialLink('127.0.0.1', await startBalancer(port, HEADER, delivery, headerRead), secret);
        cleanup(() => link.destroy());
        await once(link, isTlsSocket(link) ? 'secureConnect' : 'connect');
        // The plain link's first packet; TLS has already spoken (its ClientHello).
        link.write('HELLO, sproxy');
      });
    });
    await linked;
    // Held back, the link's bytes came in reads of their own after the header's.
    expect(readAlone).toBe(delivery === 'before the first bytes' ? HEADER.length : null);
    const [link] = links;
    expect(link?.peer).toBe('[2001:db8::7]:40000');
    const received: Buffer[] = [];
    await new Promise<void>((resolve) =>
      readChunks(link?.socket as Duplex, (chunk) => {
        received.push(Buffer.from(chunk));
        if (Buffer.concat(received).toString() === 'HELLO, sproxy') resolve();
      }),
    );
  });
});
