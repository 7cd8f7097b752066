import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { expect } from 'vitest';
import { ClientEndpoint, type Dialer } from '../../common/endpoints/client-endpoint.js';
import type { ClientConfig, ServerConfig } from '../../common/endpoints/config.js';
import type { EternalError } from '../../common/support/errors.js';
import { LINK_SESSION_ID, PacketType } from '../../common/protocol/constants.js';
import { encodeHeader } from '../../common/protocol/header.js';
import { ServerEndpoint } from '../../common/endpoints/server-endpoint.js';
import type { Session } from '../../common/engine/session.js';
import { useCleanup } from './cleanup.js';
import type { ClientUpInfo, ExpiredInfo, Finished, LinkDownInfo, RetryInfo, UpInfo } from './endpoint-events.js';
import { FaultyPair, MemorySocket } from './duplex-pair.js';
import { ManualClock } from './manual-clock.js';

/**
 * The endpoint tests' rig: a ServerEndpoint and a ClientEndpoint in one process, and the small
 * helpers that read and write their sessions.
 */

/** Rigs close their endpoints and sockets after each test of the file that imports this. */
const onCleanup = useCleanup();


/**
 * What the client's dialer does on the memory transport:
 *  - accept:  a fresh pair; the far end goes to server.handleConnection
 *  - refuse:  the attempt fails with ECONNREFUSED on the next tick
 *  - hang:    the attempt never connects (the connect timeout must end it)
 *  - custom:  `customDial` decides
 */
export type DialMode = 'accept' | 'refuse' | 'hang' | 'custom';

export interface RigOptions {
  transport?: 'memory' | 'tcp';
  /**
   * The client's configuration. Its express lane is off unless asked for: a test of how links are
   * dialled, cut and resumed counts connections, and the lane's would get in the way.
   */
  client?: Partial<ClientConfig>;
  server?: Partial<ServerConfig>;
  /** The server acknowledges OPENs only on Session.confirmOpen() (as sproxy does). */
  confirmOpens?: boolean;
  random?: () => number;
  mode?: DialMode;
  customDial?: Dialer;
  /** Called with each accepted memory pair once the server has it (to watch what crosses it). */
  tap?: (pair: FaultyPair) => void;
  clock?: ManualClock;
  /** The client's view of the host's addresses (its address watch); the real interfaces by default. */
  readAddresses?: () => Set<string>;
}

interface TcpState {
  port: number;
  clientSockets: Socket[];
  serverSockets: Socket[];
}

export const HEARTBEAT = encodeHeader({ type: PacketType.Heartbeat, sessionId: LINK_SESSION_ID, seq: 0, ack: 0, length: 0 });

/**
 * A ServerEndpoint and a ClientEndpoint in this process, on one manual clock, joined by in-memory
 * pairs (or real loopback TCP), with every event they emit recorded.
 */
export class Rig {
  readonly clock: ManualClock;
  readonly server: ServerEndpoint;
  readonly client: ClientEndpoint;
  mode: DialMode;
  customDial: Dialer | null;
  readonly #tap: ((pair: FaultyPair) => void) | null;
  /** Memory transport: one pair per accepted dial, in order. */
  readonly pairs: FaultyPair[] = [];
  /** Clock time of every dial. */
  readonly dialTimes: number[] = [];
  readonly serverSessions: Session[] = [];
  readonly sessionErrors = new Map<Session, Error[]>();
  readonly ups: UpInfo[] = [];
  readonly downs: EternalError[] = [];
  readonly retries: RetryInfo[] = [];
  readonly clientFinished: Finished[] = [];
  readonly clientUps: ClientUpInfo[] = [];
  readonly linkDowns: LinkDownInfo[] = [];
  readonly expired: ExpiredInfo[] = [];
  readonly serverFinished: Finished[] = [];
  readonly contexts: Array<{ clientId: string; peer: string }> = [];
  readonly #tcp: TcpState | null;
  readonly #sessionWaiters: Array<{ index: number; resolve: (session: Session) => void }> = [];

  private constructor(options: RigOptions, tcp: TcpState | null) {
    this.#tcp = tcp;
    this.clock = options.clock ?? new ManualClock();
    this.mode = options.mode ?? 'accept';
    this.customDial = options.customDial ?? null;
    this.#tap = options.tap ?? null;
    const server = new ServerEndpoint({
      clock: this.clock,
      confirmOpens: options.confirmOpens ?? false,
      ...(options.server === undefined ? {} : { config: options.server }),
    });
    this.server = server;
    onCleanup(() => server.close());
    server.on('session', (session, context) => {
      this.#watchErrors(session);
      this.serverSessions.push(session);
      this.contexts.push(context);
      for (const waiter of [...this.#sessionWaiters]) {
        if (waiter.index < this.serverSessions.length) {
          this.#sessionWaiters.splice(this.#sessionWaiters.indexOf(waiter), 1);
          waiter.resolve(session);
        }
      }
    });
    server.on('session-finished', (session, reason, detail) => this.serverFinished.push({ session, reason, detail }));
    server.on('client-up', (info) => this.clientUps.push(info));
    server.on('link-down', (info) => this.linkDowns.push(info));
    server.on('client-expired', (info) => this.expired.push(info));

    const client = new ClientEndpoint({
      dial: this.#dial,
      serverName: tcp === null ? 'memory' : `127.0.0.1:${tcp.port}`,
      clock: this.clock,
      config: { expressLane: false, ...options.client },
      ...(options.random === undefined ? {} : { random: options.random }),
      ...(options.readAddresses === undefined ? {} : { readAddresses: options.readAddresses }),
    });
    this.client = client;
    onCleanup(() => client.close('test over'));
    client.on('up', (info) => this.ups.push(info));
    client.on('down', (error) => this.downs.push(error));
    client.on('retry', (info) => this.retries.push(info));
    client.on('session-finished', (session, reason, detail) => this.clientFinished.push({ session, reason, detail }));
  }

  static memory(options: Omit<RigOptions, 'transport'> = {}): Rig {
    return new Rig(options, null);
  }

  static async start(options: RigOptions = {}): Promise<Rig> {
    if (options.transport !== 'tcp') return new Rig(options, null);
    const clientSockets: Socket[] = [];
    const serverSockets: Socket[] = [];
    let rig: Rig | null = null;
    const netServer = createServer((socket) => {
      serverSockets.push(socket);
      if (rig === null) socket.destroy();
      else rig.server.handleConnection(socket, `${socket.remoteAddress}:${socket.remotePort}`);
    });
    netServer.listen(0, '127.0.0.1');
    await once(netServer, 'listening');
    onCleanup(async () => {
      for (const socket of [...clientSockets, ...serverSockets]) socket.destroy();
      await new Promise<void>((resolve) => netServer.close(() => resolve()));
    });
    rig = new Rig(options, { port: (netServer.address() as AddressInfo).port, clientSockets, serverSockets });
    return rig;
  }

  readonly #dial: Dialer = () => {
    this.dialTimes.push(this.clock.now());
    if (this.#tcp !== null) {
      const socket = connect({ host: '127.0.0.1', port: this.#tcp.port });
      this.#tcp.clientSockets.push(socket);
      return socket;
    }
    switch (this.mode) {
      case 'refuse':
        return MemorySocket.refused();
      case 'hang':
        return new MemorySocket();
      case 'custom':
        if (this.customDial === null) throw new Error('no custom dialer');
        return this.customDial();
      case 'accept': {
        const pair = new FaultyPair();
        this.pairs.push(pair);
        this.server.handleConnection(pair.b, `memory-${this.pairs.length}`);
        this.#tap?.(pair);
        return pair.a;
      }
    }
  };

  /** The pair of the latest accepted memory link. */
  get pair(): FaultyPair {
    const pair = this.pairs.at(-1);
    if (pair === undefined) throw new Error('no memory link yet');
    return pair;
  }

  /** Both ends of the current link fail at once, as when the path dies with resets. */
  cut(): void {
    if (this.#tcp === null) {
      this.pair.cut();
      return;
    }
    this.#tcp.clientSockets.at(-1)?.destroy();
    this.#tcp.serverSockets.at(-1)?.destroy();
  }

  open(): Session {
    const session = this.client.openSession();
    this.#watchErrors(session);
    return session;
  }

  errorsOf(session: Session): Error[] {
    return this.sessionErrors.get(session) ?? [];
  }

  nextUp(): Promise<UpInfo> {
    return new Promise((resolve) => this.client.once('up', resolve));
  }

  /** The server side of the `index`-th session the client opened (0-based), once it exists. */
  serverSession(index: number): Promise<Session> {
    const existing = this.serverSessions[index];
    if (existing !== undefined) return Promise.resolve(existing);
    return new Promise((resolve) => this.#sessionWaiters.push({ index, resolve }));
  }

  /** Advances the clock timer by timer until `done()` holds (fails after `limitMs`). */
  async advanceUntil(done: () => boolean, limitMs = 60_000): Promise<void> {
    const endMs = this.clock.now() + limitMs;
    while (!done()) {
      const due = this.clock.nextDueMs;
      if (due === null || due > endMs) throw new Error(`condition not reached within ${limitMs} ms of clock time`);
      await this.clock.advanceTo(due);
    }
  }

  #watchErrors(session: Session): void {
    const errors: Error[] = [];
    this.sessionErrors.set(session, errors);
    session.on('error', (error) => errors.push(error));
  }
}

/** Everything read from a stream: bytes, hash, end, error; and waits on the byte count. */
export class Received {
  bytes = 0;
  readonly chunks: Buffer[] = [];
  readonly ended: Promise<void>;
  readonly #hash = createHash('sha256');
  readonly #waiters: Array<{ bytes: number; resolve: () => void }> = [];

  constructor(stream: Readable) {
    this.ended = new Promise((resolve) => stream.once('end', resolve));
    stream.on('data', (chunk: Buffer) => {
      this.bytes += chunk.length;
      this.chunks.push(chunk);
      this.#hash.update(chunk);
      for (const waiter of [...this.#waiters]) {
        if (this.bytes >= waiter.bytes) {
          this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
          waiter.resolve();
        }
      }
    });
  }

  get text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }

  digest(): string {
    return this.#hash.copy().digest('hex');
  }

  atLeast(bytes: number): Promise<void> {
    if (this.bytes >= bytes) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ bytes, resolve }));
  }
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Writes `data` in chunks, honouring backpressure, then ends the stream. */
export async function writeAll(stream: Writable, data: Buffer, chunkBytes = 64 * 1024): Promise<void> {
  for (let offset = 0; offset < data.length; offset += chunkBytes) {
    if (!stream.write(data.subarray(offset, offset + chunkBytes))) await once(stream, 'drain');
  }
  stream.end();
}

/** A client and server session pair that has already carried a byte each way. */
export async function openedSession(rig: Rig): Promise<{ atClient: Session; atServer: Session }> {
  const index = rig.serverSessions.length;
  const atClient = rig.open();
  atClient.write('?');
  const atServer = await rig.serverSession(index);
  await once(atServer, 'readable');
  expect(atServer.read(1)?.toString()).toBe('?');
  atServer.write('!');
  await once(atClient, 'readable');
  expect(atClient.read(1)?.toString()).toBe('!');
  return { atClient, atServer };
}

// Long timers for tests about data: no heartbeat or deadline fires while the clock is moved.
export const QUIET_TIMERS = { heartbeatIntervalMs: 60_000, deadAfterMs: 120_000 };
