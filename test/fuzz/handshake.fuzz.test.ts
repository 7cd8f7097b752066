/**
 * Fuzzing of the server's handshake: decodeHello on its own (many inputs, cheap), then whole
 * connections through ServerEndpoint.handleConnection over the in-memory pair (fewer inputs, each
 * a few event-loop turns): random bytes, and valid HELLOs (known, unknown and stolen client ids,
 * right and wrong resume tokens) followed by session traffic, mutated, in random chunkings, ended
 * by a FIN, a reset or silence. A legitimate client with an open session stays connected through
 * it all, and a new client connects afterwards: the endpoint is not poisoned.
 * Run counts and seed: see fuzz-support.ts (FUZZ_RUNS, FUZZ_SEED).
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ClientEndpoint, type Dialer } from '../../common/endpoints/client-endpoint.js';
import { HandshakeError, type EternalError } from '../../common/support/errors.js';
import type { LogFields, Logger } from '../../common/support/logger.js';
import {
  CLIENT_ID_BYTES,
  GoAwayCode,
  LINK_SESSION_ID,
  PacketType,
  PROTOCOL_VERSION,
  RESUME_TOKEN_BYTES,
} from '../../common/protocol/constants.js';
import { FrameDecoder } from '../../common/protocol/frame-decoder.js';
import { decodeHello, encodeHello, HELLO_PAYLOAD_BYTES } from '../../common/protocol/messages.js';
import { ServerEndpoint, type ServerEndpointEvents } from '../../common/endpoints/server-endpoint.js';
import type { Session } from '../../common/engine/session.js';
import { useCleanup } from '../helpers/cleanup.js';
import { FaultyPair, settle } from '../helpers/duplex-pair.js';
import { ManualClock } from '../helpers/manual-clock.js';
import {
  assertEternalError,
  chunk,
  chunkingArb,
  encodeStream,
  expectBoundedMemory,
  extremeUint32,
  frameArb,
  fuzzParameters,
  mutate,
  mutationArb,
  runsFor,
  sampleMemory,
  timeoutFor,
  uint32,
  type Chunking,
  type FrameSpec,
  type Mutation,
} from './fuzz-support.js';

const onCleanup = useCleanup();

// ── decodeHello on its own ──────────────────────────────────────────────────

/** A valid HELLO payload with its version replaced, cut, extended, or bits flipped. */
const helloPayloadArb: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 2 * HELLO_PAYLOAD_BYTES }).map((bytes) => Buffer.from(bytes)) },
  {
    weight: 5,
    arbitrary: fc
      .record({
        id: fc.uint8Array({ minLength: CLIENT_ID_BYTES, maxLength: CLIENT_ID_BYTES }),
        token: fc.uint8Array({ minLength: RESUME_TOKEN_BYTES, maxLength: RESUME_TOKEN_BYTES }),
        version: fc.oneof({ weight: 3, arbitrary: fc.constant(PROTOCOL_VERSION) }, { weight: 1, arbitrary: extremeUint32 }),
        edit: fc.oneof(
          fc.constant({ kind: 'none' as const }),
          fc.record({ kind: fc.constant('cut' as const), keep: fc.nat({ max: HELLO_PAYLOAD_BYTES }) }),
          fc.record({ kind: fc.constant('extend' as const), extra: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
          fc.record({ kind: fc.constant('flip' as const), at: fc.nat({ max: HELLO_PAYLOAD_BYTES - 1 }), bit: fc.nat({ max: 7 }) }),
        ),
      })
      .map(({ id, token, version, edit }) => {
        const payload = encodeHello(Buffer.from(id), Buffer.from(token));
        payload.writeUInt32BE(version, 0);
        switch (edit.kind) {
          case 'none':
            return payload;
          case 'cut':
            return payload.subarray(0, edit.keep);
          case 'extend':
            return Buffer.concat([payload, edit.extra]);
          case 'flip':
            payload[edit.at] = (payload[edit.at] as number) ^ (1 << edit.bit);
            return payload;
        }
      }),
  },
);

const HANDSHAKE_CODE: ReadonlySet<string> = new Set(['ETCP_ERR_HANDSHAKE']);

describe('decodeHello fuzz', () => {
  const runs = runsFor('helloPayloads');
  it(`accepts exactly the 52-byte version-1 payloads, copies id and token, and refuses the rest with HandshakeError (${runs} inputs)`, () => {
    const before = sampleMemory();
    let accepted = 0;
    fc.assert(
      fc.property(helloPayloadArb, (payload) => {
        const valid = payload.length === HELLO_PAYLOAD_BYTES && payload.readUInt32BE(0) === PROTOCOL_VERSION;
        let hello: ReturnType<typeof decodeHello> | null = null;
        let caught: unknown = null;
        try {
          hello = decodeHello(payload);
        } catch (error) {
          caught = error;
        }
        if (!valid) {
          const error = assertEternalError(caught, HANDSHAKE_CODE);
          expect(error).toBeInstanceOf(HandshakeError);
          expect(error.message).toBe(
            payload.length === HELLO_PAYLOAD_BYTES
              ? `unsupported protocol version ${payload.readUInt32BE(0)}`
              : `HELLO payload must be ${HELLO_PAYLOAD_BYTES} bytes, got ${payload.length}`,
          );
          return;
        }
        if (caught !== null || hello === null) expect.fail(`a valid HELLO was refused: ${String(caught)}`);
        accepted++;
        const id = Buffer.from(payload.subarray(4, 4 + CLIENT_ID_BYTES));
        const token = Buffer.from(payload.subarray(4 + CLIENT_ID_BYTES));
        // Copies: the id and token outlive the socket chunk they came in.
        payload.fill(0xa5);
        if (hello.version !== PROTOCOL_VERSION || !hello.clientId.equals(id) || !hello.resumeToken.equals(token)) {
          expect({ version: hello.version, id: hello.clientId.toString('hex'), token: hello.resumeToken.toString('hex') }).toEqual({
            version: PROTOCOL_VERSION,
            id: id.toString('hex'),
            token: token.toString('hex'),
          });
        }
      }),
      fuzzParameters('helloPayloads'),
    );
    expect(accepted).toBeGreaterThan(runs / 10);
    expectBoundedMemory(before);
  }, timeoutFor(runs, 0.1));
});

// ── Whole connections ───────────────────────────────────────────────────────

const DEAD_AFTER_MS = 3000;
const RESUME_WINDOW_MS = 5000;
/** The legitimate client and three more: fuzzed HELLOs also meet the client limit. */
const MAX_CLIENTS = 4;
/** Connections started together in one fast-check run; they race each other on the server. */
const CONNECTIONS_PER_RUN = 4;

const HEARTBEAT_FRAME: FrameSpec = { header: { type: PacketType.Heartbeat, sessionId: 0, seq: 0, ack: 0 }, payload: Buffer.alloc(0) };

/** Client ids the fuzzer reuses, so that HELLOs resume, supersede and collide; index 0 is the legitimate client's. */
const POOL_IDS = Array.from({ length: 4 }, () => randomBytes(CLIENT_ID_BYTES));
const POOL_TOKENS = POOL_IDS.map(() => randomBytes(RESUME_TOKEN_BYTES));
const LEGITIMATE = { id: POOL_IDS[0] as Buffer, token: POOL_TOKENS[0] as Buffer };

/**
 * The HELLO of a connection: a pooled id with its own token (never the legitimate client's: the
 * fuzzer does not know it), with another pooled token, or random id and token.
 */
const helloFrameArb: fc.Arbitrary<FrameSpec> = fc
  .record({
    id: fc.nat({ max: POOL_IDS.length }),
    token: fc.constantFrom('own' as const, 'other' as const, 'random' as const),
    other: fc.nat({ max: POOL_IDS.length - 1 }),
    seq: fc.oneof(fc.constant(0), uint32),
    ack: fc.oneof(fc.constant(0), uint32),
  })
  .map(({ id, token, other, seq, ack }) => {
    const clientId = POOL_IDS[id] ?? randomBytes(CLIENT_ID_BYTES);
    let resumeToken: Buffer;
    if (token === 'own' && id > 0 && id < POOL_IDS.length) resumeToken = POOL_TOKENS[id] as Buffer;
    else if (token === 'other' && other > 0) resumeToken = POOL_TOKENS[other] as Buffer;
    else resumeToken = randomBytes(RESUME_TOKEN_BYTES);
    return { header: { type: PacketType.Hello, sessionId: LINK_SESSION_ID, seq, ack }, payload: encodeHello(clientId, resumeToken) };
  });

/**
 * What a well-behaved client sends after WELCOME, to get past the handshake into the multiplexer:
 * SYNC_END, then OPEN, DATA, FIN or RESET of one session with consistent seqs and acks.
 */
const sessionScriptArb: fc.Arbitrary<FrameSpec[]> = fc
  .record({
    sessionId: fc.oneof(fc.integer({ min: 1, max: 3 }), extremeUint32),
    seq: fc.oneof(fc.constant(0), fc.constant(0xffff_fffe), uint32),
    ack: uint32,
    target: fc.oneof(fc.constant(''), fc.constant('127.0.0.1:22'), fc.string({ maxLength: 300 })),
    data: fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 3 }),
    end: fc.constantFrom('fin' as const, 'reset' as const, 'none' as const),
  })
  .map(({ sessionId, seq, ack, target, data, end }) => {
    const frames: FrameSpec[] = [
      { header: { type: PacketType.SyncEnd, sessionId: 0, seq: 0, ack: 0 }, payload: Buffer.alloc(0) },
      { header: { type: PacketType.Open, sessionId, seq, ack }, payload: Buffer.from(target, 'utf8') },
    ];
    let next = seq;
    for (const bytes of data) {
      next = (next + 1) >>> 0;
      frames.push({ header: { type: PacketType.Data, sessionId, seq: next, ack }, payload: Buffer.from(bytes) });
    }
    if (end !== 'none') {
      next = (next + 1) >>> 0;
      const type = end === 'fin' ? PacketType.Fin : PacketType.Reset;
      frames.push({ header: { type, sessionId, seq: next, ack }, payload: Buffer.from(end === 'reset' ? 'fuzz reset' : '') });
    }
    return frames;
  });

type Ending = 'fin' | 'cut' | 'silence';

interface ConnectionInput {
  bytes: Buffer;
  chunking: Chunking;
  ending: Ending;
}

const streamConnectionArb = fc
  .record({
    heartbeats: fc.nat({ max: 2 }),
    first: fc.oneof({ weight: 6, arbitrary: helloFrameArb }, { weight: 1, arbitrary: frameArb }),
    after: fc.oneof(sessionScriptArb, fc.array(frameArb, { maxLength: 3 })),
    mutations: fc.oneof(
      { weight: 1, arbitrary: fc.constant<Mutation[]>([]) },
      { weight: 2, arbitrary: fc.array(mutationArb, { minLength: 1, maxLength: 3 }) },
    ),
  })
  .map(({ heartbeats, first, after, mutations }) => {
    const frames = [...Array.from({ length: heartbeats }, () => HEARTBEAT_FRAME), first, ...after];
    return mutate(encodeStream(frames), mutations);
  });

const connectionArb: fc.Arbitrary<ConnectionInput> = fc.record({
  bytes: fc.oneof(
    { weight: 6, arbitrary: streamConnectionArb },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes)) },
  ),
  chunking: chunkingArb,
  ending: fc.constantFrom<Ending>('fin', 'cut', 'silence'),
});

/** Messages of the ProtocolErrors the engine raises on purpose. Any other is a foreign exception that Link wrapped. */
const PROTOCOL_MESSAGES: readonly RegExp[] = [
  /^unexpected \w+ packet on a running link$/,
  /^\w+ packet before SYNC_END$/,
  /^OPEN for session 0$/,
  /^OPEN for session \d+, an id of our own half$/,
  /^LISTEN_REPLY sent to the server$/,
  /^OPEN target of \d+ bytes$/,
  /^session \d+: seq \d+ skips ahead of the expected one$/,
  /^session \d+: ack \d+ outside the unacknowledged range \[\d+, \d+\]$/,
  /^session \d+: unexpected sequenced packet type \d+$/,
  /^session \d+: DATA after FIN$/,
  /^session \d+: second FIN$/,
];

/** What the messages of each error a fuzzed link may end with look like. */
const LINK_DOWN_MESSAGES: Readonly<Record<string, readonly RegExp[]>> = {
  ETCP_ERR_FRAME_TOO_LARGE: [/^frame payload of \d+ bytes exceeds the maximum of \d+$/],
  ETCP_ERR_UNKNOWN_PACKET_TYPE: [/^unknown packet type \d+$/],
  ETCP_ERR_PROTOCOL: PROTOCOL_MESSAGES,
  ETCP_ERR_HANDSHAKE: [
    /^expected HELLO, got \w+$/,
    /^express lane for client [0-9a-f]{8} refused: (no such client|its link is not running|its link has an express lane already)$/,
    new RegExp(`^HELLO payload must be ${HELLO_PAYLOAD_BYTES} bytes, got \\d+$`),
    /^unsupported protocol version \d+$/,
    new RegExp(`^no HELLO within ${DEAD_AFTER_MS} ms$`),
  ],
  ETCP_ERR_AUTH: [/^resume of client [0-9a-f]{8} refused: wrong resume token$/],
  ETCP_ERR_LIMIT: [new RegExp(`^too many clients \\(limit ${MAX_CLIENTS}\\)$`)],
  ETCP_ERR_LINK_DEAD: [new RegExp(`^no packet from the peer for ${DEAD_AFTER_MS} ms$`)],
  ETCP_ERR_LINK_CLOSED: [/^peer closed the link$/, /^socket closed$/, /^socket error: read ECONNRESET$/],
};
const LINK_DOWN_CODES: ReadonlySet<string> = new Set(Object.keys(LINK_DOWN_MESSAGES));

/** The fuzzer's end of one connection, and what it saw of the server. */
class FuzzConnection {
  readonly pair = new FaultyPair();
  readonly peer: string;
  readonly received: PacketType[] = [];
  goAwayCode: number | null = null;
  /** The server's bytes must always be valid frames. */
  outputError: unknown = null;
  closed = false;
  readonly #decoder = new FrameDecoder();

  constructor(peer: string) {
    this.peer = peer;
    const end = this.pair.a;
    end.on('error', () => {});
    end.on('close', () => {
      this.closed = true;
    });
    end.on('data', (bytes: Buffer) => {
      if (this.outputError !== null) return;
      try {
        for (const frame of this.#decoder.push(bytes)) {
          this.received.push(frame.header.type);
          if (frame.header.type === PacketType.GoAway && this.goAwayCode === null) this.goAwayCode = frame.header.ack;
        }
      } catch (error) {
        this.outputError = error;
      }
    });
  }

  get welcomed(): boolean {
    return this.received.includes(PacketType.Welcome);
  }
}

describe('server handshake fuzz: whole connections through ServerEndpoint.handleConnection', () => {
  let uncaught: unknown[] = [];
  const onUncaught = (error: unknown): void => {
    uncaught.push(error);
  };
  beforeEach(() => {
    uncaught = [];
    process.on('uncaughtException', onUncaught);
    process.on('unhandledRejection', onUncaught);
  });
  afterEach(() => {
    process.off('uncaughtException', onUncaught);
    process.off('unhandledRejection', onUncaught);
  });

  const connections = runsFor('serverConnections');
  const batches = Math.max(1, Math.ceil(connections / CONNECTIONS_PER_RUN));
  it(`every bad connection ends with a 'link-down' carrying one of our errors; other clients are unharmed (${batches * CONNECTIONS_PER_RUN} connections)`, async () => {
    const clock = new ManualClock();
    // Links that end without 'link-down', by design: superseded by the same client's newer link,
    // or closed by the client's own GOAWAY (it leaves for good).
    const superseded = new Set<string>();
    const goneAway = new Set<string>();
    const logger: Logger = {
      debug: () => {},
      info: (fields: LogFields, message: string) => {
        if (message === 'new link supersedes the old one') superseded.add(String(fields['old']));
      },
      warn: (fields: LogFields, message: string) => {
        if (message === 'peer is going away') goneAway.add(String(fields['peer']));
      },
      error: () => {},
    };
    const server = new ServerEndpoint({
      clock,
      logger,
      config: { heartbeatIntervalMs: 1000, deadAfterMs: DEAD_AFTER_MS, resumeWindowMs: RESUME_WINDOW_MS, maxClients: MAX_CLIENTS },
    });
    onCleanup(() => server.close());
    const linkDowns = new Map<string, Array<ServerEndpointEvents['link-down'][0]>>();
    server.on('link-down', (info) => {
      const list = linkDowns.get(info.peer) ?? [];
      list.push(info);
      linkDowns.set(info.peer, list);
    });
    // What an application does with a session: read it, echo it, end it; errors are the session's own
    // business. Nothing is kept per session, so that memory reflects the engine alone.
    let sessionsOpened = 0;
    const announced = new WeakSet<Session>();
    server.on('session', (session: Session) => {
      sessionsOpened++;
      announced.add(session);
      session.on('error', () => {});
      session.on('data', (data: Buffer) => session.write(data));
      session.on('end', () => session.end());
    });

    // Every session that finishes must be one the application was given (see 'server sessions:
    // regressions' below). The listener keeps a regression from ending the run before it is counted.
    let unannounced = 0;
    server.on('session-finished', (session: Session) => {
      if (announced.has(session)) return;
      unannounced++;
      session.on('error', () => {});
    });

    // The legitimate client: up, with a session, before the fuzzing starts.
    let dials = 0;
    const dial: Dialer = () => {
      const pair = new FaultyPair();
      dials++;
      server.handleConnection(pair.b, `legitimate-${dials}`);
      return pair.a;
    };
    const legitimate = new ClientEndpoint({ dial, serverName: 'memory', clock, clientId: LEGITIMATE.id, resumeToken: LEGITIMATE.token });
    onCleanup(() => legitimate.close('test over'));
    const legitimateDowns: EternalError[] = [];
    legitimate.on('down', (error) => legitimateDowns.push(error));
    await once(legitimate, 'up');
    const legitimateSession = legitimate.openSession();
    const legitimateErrors: Error[] = [];
    legitimateSession.on('error', (error) => legitimateErrors.push(error));
    const echoed = async (text: string): Promise<string> => {
      const chunks: Buffer[] = [];
      const onData = (data: Buffer): void => {
        chunks.push(data);
      };
      legitimateSession.on('data', onData);
      legitimateSession.write(text);
      await settle();
      legitimateSession.off('data', onData);
      return Buffer.concat(chunks).toString('utf8');
    };
    expect(await echoed('before the fuzzing')).toBe('before the fuzzing');

    const before = sampleMemory();
    let next = 0;
    let welcomed = 0;
    const codes = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(fc.array(connectionArb, { minLength: CONNECTIONS_PER_RUN, maxLength: CONNECTIONS_PER_RUN }), async (inputs) => {
        const batch = inputs.map((input) => ({ input, connection: new FuzzConnection(`fuzz-${++next}`) }));
        for (const { connection } of batch) server.handleConnection(connection.pair.b, connection.peer);
        for (const { input, connection } of batch) {
          for (const piece of chunk(input.bytes, input.chunking)) connection.pair.a.write(piece);
        }
        await settle();
        for (const { input, connection } of batch) {
          if (input.ending === 'fin') connection.pair.a.end();
          else if (input.ending === 'cut') connection.pair.cut();
        }
        await settle();
        // Silent connections end by the handshake deadline or the dead-link timeout; refused ones
        // are let go of after a grace period; expired clients free their places.
        await clock.advance(DEAD_AFTER_MS);
        await settle();

        for (const { connection } of batch) {
          const downs = linkDowns.get(connection.peer) ?? [];
          linkDowns.delete(connection.peer);
          const seen = { peer: connection.peer, received: connection.received.map((type) => PacketType[type]), downs: downs.length };
          if (connection.outputError !== null) expect.fail(`server sent invalid frames to ${connection.peer}: ${String(connection.outputError)}`);
          if (!connection.closed) expect.fail(`connection still open: ${JSON.stringify(seen)}`);
          if (connection.welcomed) welcomed++;
          const wasSuperseded = superseded.delete(connection.peer);
          const wentAway = goneAway.delete(connection.peer);
          if (downs.length === 0) {
            if (!connection.welcomed || !(wasSuperseded || wentAway)) expect.fail(`no link-down: ${JSON.stringify(seen)}`);
            continue;
          }
          if (downs.length > 1) expect.fail(`several link-downs: ${JSON.stringify(seen)}`);
          const down = downs[0] as ServerEndpointEvents['link-down'][0];
          const error = assertEternalError(down.error, LINK_DOWN_CODES);
          codes.set(error.code, (codes.get(error.code) ?? 0) + 1);
          if (!(LINK_DOWN_MESSAGES[error.code] ?? []).some((pattern) => pattern.test(error.message))) {
            expect.fail(`${error.name} with an unexpected message (a foreign exception wrapped?): ${error.message}`);
          }
          // Before WELCOME the link is anonymous; after it, it is the client's.
          if ((down.clientId !== null) !== connection.welcomed) expect.fail(`clientId ${down.clientId} on ${JSON.stringify(seen)}`);
          if (connection.welcomed && down.clientId === LEGITIMATE.id.toString('hex')) {
            expect.fail(`the fuzzer took over the legitimate client's id: ${JSON.stringify(seen)}`);
          }
          // A JOIN refused (no express lane for that client) is told in a GOAWAY too, as the closing kind.
          const refusal =
            error.code === 'ETCP_ERR_AUTH'
              ? GoAwayCode.Authentication
              : error.code === 'ETCP_ERR_LIMIT'
                ? GoAwayCode.Limit
                : error.message.startsWith('express lane for client')
                  ? GoAwayCode.Closing
                  : null;
          if (connection.goAwayCode !== refusal) expect.fail(`GOAWAY ${connection.goAwayCode} for ${error.code}: ${JSON.stringify(seen)}`);
        }
        if (server.pendingLinkCount !== 0) expect.fail(`${server.pendingLinkCount} pending links left`);
        if (uncaught.length > 0) expect.fail(`uncaught: ${String(uncaught[0])}`);
      }),
      fuzzParameters('serverConnections', batches),
    );
    expectBoundedMemory(before);
    expect(uncaught).toEqual([]);
    expect(unannounced).toBe(0);

    // The fuzzing reached every kind of ending, and past the handshake into sessions (checked only
    // when the run is long enough for all of them to come up).
    if (batches >= 500) {
      expect([...codes.keys()]).toEqual(
        expect.arrayContaining([
          'ETCP_ERR_AUTH',
          'ETCP_ERR_FRAME_TOO_LARGE',
          'ETCP_ERR_HANDSHAKE',
          'ETCP_ERR_LIMIT',
          'ETCP_ERR_LINK_CLOSED',
          'ETCP_ERR_LINK_DEAD',
          'ETCP_ERR_PROTOCOL',
          'ETCP_ERR_UNKNOWN_PACKET_TYPE',
        ]),
      );
      expect(sessionsOpened).toBeGreaterThan(0);
    }
    expect(welcomed).toBeGreaterThan(0);

    // The legitimate client never lost its link, and its session still carries data.
    expect(legitimateDowns).toEqual([]);
    expect(await echoed('after the fuzzing')).toBe('after the fuzzing');
    expect(legitimateErrors).toEqual([]);

    // The endpoint is not poisoned: once the fuzzed clients have expired, a new client comes up and works.
    await clock.advance(RESUME_WINDOW_MS);
    await settle();
    expect(server.clientCount).toBe(1);
    const newcomer = new ClientEndpoint({ dial, serverName: 'memory', clock });
    onCleanup(() => newcomer.close('test over'));
    const up = await once(newcomer, 'up');
    expect(up[0]).toMatchObject({ knownClient: false });
    const session = newcomer.openSession();
    const newcomerErrors: Error[] = [];
    session.on('error', (error) => newcomerErrors.push(error));
    const reply = new Promise<string>((resolve) => session.once('data', (data: Buffer) => resolve(data.toString('utf8'))));
    session.write('hello after the fuzzing');
    expect(await reply).toBe('hello after the fuzzing');
    expect(server.clientCount).toBe(2);
    expect(newcomerErrors).toEqual([]);
    expect(uncaught).toEqual([]);
  }, timeoutFor(batches, 20));
});

describe('server handshake: regressions', () => {
  // BUG (found by this fuzzing, fixed: the decoder now yields one frame at a time): the outcome of a connection depends on how TCP cuts its bytes.
  // The server caps a pending link's payloads at HELLO_PAYLOAD_BYTES (server-endpoint.ts, in
  // handleConnection) and raises the cap in #onHello; but Link.#onSocketData (link.ts) decodes every
  // frame of a chunk before it hands the first one to the handler. A frame sent right behind HELLO
  // is therefore judged by the HELLO-sized cap when it arrives in the same chunk as the HELLO
  // (FrameTooLargeError, link refused), and by the 64 KiB cap when it arrives in a later chunk (fine).
  // Our client never sends anything but heartbeats before WELCOME, so it is not hit today; a client
  // that pipelines its SYNC_END and an OPEN behind HELLO to save a round trip would fail at random.
  it('a frame pipelined behind HELLO gets the same outcome in the HELLO\'s chunk as in the next one', async () => {
    const outcomes: string[] = [];
    for (const split of [false, true]) {
      const server = new ServerEndpoint({ clock: new ManualClock() });
      onCleanup(() => server.close());
      const events: string[] = [];
      server.on('link-down', (info) => events.push(`link-down ${info.error.code}: ${info.error.message}`));
      server.on('session', (session, context) => {
        session.on('error', () => {});
        events.push(`session to ${String(context.target)}`);
      });
      const connection = new FuzzConnection(split ? 'split' : 'whole');
      server.handleConnection(connection.pair.b, connection.peer);
      const hello = encodeStream([
        { header: { type: PacketType.Hello, sessionId: 0, seq: 0, ack: 0 }, payload: encodeHello(randomBytes(CLIENT_ID_BYTES), randomBytes(RESUME_TOKEN_BYTES)) },
      ]).bytes;
      // SYNC_END, then an OPEN whose 71-byte target is well within the protocol's limits.
      const rest = encodeStream([
        { header: { type: PacketType.SyncEnd, sessionId: 0, seq: 0, ack: 0 }, payload: Buffer.alloc(0) },
        { header: { type: PacketType.Open, sessionId: 1, seq: 10, ack: 20 }, payload: Buffer.from(`${'a'.repeat(60)}.example:22`) },
      ]).bytes;
      if (split) {
        connection.pair.a.write(hello);
        await settle();
        connection.pair.a.write(rest);
      } else {
        connection.pair.a.write(Buffer.concat([hello, rest]));
      }
      await settle();
      outcomes.push(events.join('; '));
    }
    // Actual: ['link-down ETCP_ERR_FRAME_TOO_LARGE: frame payload of 71 bytes exceeds the maximum of 52', 'session to aaa….example:22'].
    expect(outcomes[0]).toBe(outcomes[1]);
  });
});

describe('server sessions: regressions', () => {
  // BUG (found by this fuzzing, fixed: the target is decoded before the session exists), as an uncaught SessionLostError after about 70 000 connections with
  // FUZZ_RUNS=2000000): Multiplexer.#onOpen (common/engine/multiplexer.ts) creates and registers the
  // session, and only then calls decodeOpenTarget(payload) as an argument of emit('session').
  // An OPEN whose target is longer than MAX_OPEN_TARGET_BYTES (261) makes decodeOpenTarget throw
  // ProtocolError: the link goes down as it should, but the session stays in the client's
  // multiplexer without the application ever having seen it, so nobody listens for its 'error'.
  // When it is later lost (the same client resumes and does not list it, its resume window
  // expires, it sends GOAWAY, or the server closes), Session.lose() destroys it with a
  // SessionLostError that nobody handles: an uncaught exception, which ends the sproxy process and
  // every other client's sessions with it. Any client that gets past HELLO can do it with HELLO,
  // SYNC_END, OPEN(300-byte target), then a second link with HELLO, SYNC_END.
  // This test gives the session a listener in 'session-finished' so that the test process survives.
  it('an OPEN with an over-long target leaves no session behind that the application never saw', async () => {
    const clock = new ManualClock();
    const server = new ServerEndpoint({ clock });
    onCleanup(() => server.close());
    const announced = new Set<Session>();
    const unannounced: Array<{ id: number; detail: string }> = [];
    const linkDowns: string[] = [];
    server.on('session', (session) => {
      announced.add(session);
      session.on('error', () => {});
    });
    server.on('session-finished', (session, _reason, detail) => {
      if (announced.has(session)) return;
      unannounced.push({ id: session.id, detail });
      session.on('error', () => {}); // without this, the SessionLostError below would be uncaught
    });
    server.on('link-down', (info) => linkDowns.push(`${info.error.code}: ${info.error.message}`));

    const clientId = randomBytes(CLIENT_ID_BYTES);
    const resumeToken = randomBytes(RESUME_TOKEN_BYTES);
    const hello = encodeStream([{ header: { type: PacketType.Hello, sessionId: 0, seq: 0, ack: 0 }, payload: encodeHello(clientId, resumeToken) }]).bytes;
    const syncEnd: FrameSpec = { header: { type: PacketType.SyncEnd, sessionId: 0, seq: 0, ack: 0 }, payload: Buffer.alloc(0) };
    const longOpen: FrameSpec = { header: { type: PacketType.Open, sessionId: 1, seq: 5, ack: 7 }, payload: Buffer.alloc(300, 0x61) };
    for (const rest of [[syncEnd, longOpen], [syncEnd]]) {
      const connection = new FuzzConnection(`link-${linkDowns.length + 1}`);
      server.handleConnection(connection.pair.b, connection.peer);
      // HELLO on its own, as when this bug was found.
      connection.pair.a.write(hello);
      await settle();
      connection.pair.a.write(encodeStream(rest).bytes);
      await settle();
    }
    expect(linkDowns).toEqual(['ETCP_ERR_PROTOCOL: OPEN target of 300 bytes']);
    // Before the fix: [{ id: 1, detail: 'the client no longer holds session 1' }], then an unhandled SessionLostError.
    expect(unannounced).toEqual([]);
  });
});
