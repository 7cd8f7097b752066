import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { ClientConfig } from '../../../common/endpoints/config.js';
import { GoAwayCode, LINK_SESSION_ID, PacketType } from '../../../common/protocol/constants.js';
import { FrameDecoder } from '../../../common/protocol/frame-decoder.js';
import { encodePacket } from '../../../common/protocol/header.js';
import { encodeHello, HELLO_PAYLOAD_BYTES } from '../../../common/protocol/messages.js';
import { DEFAULT_ENGINE_CONFIG } from '../../../common/engine/config.js';
import { ACK_HOLD_MAX_MS, EXPRESS_BACKLOG_BYTES } from '../../../common/engine/send-scheduler.js';
import { FaultyPair, MemorySocket, settle } from '../../helpers/duplex-pair.js';
import { QUIET_TIMERS, Received, Rig, sha256 } from '../../helpers/endpoint-rig.js';

/**
 * The express lane (PROTOCOL.md §4.11): each link gets a second connection, small sessions go on
 * it, bulk ones stay on the first, and a session changes lanes only once nothing of it is in flight,
 * so that its packets still arrive in order. Every connection the client makes is tapped: the
 * frames it carries towards the server are decoded, so that the tests see which lane carried what.
 */

interface TappedFrame {
  type: PacketType;
  sessionId: number;
  seq: number;
  ack: number;
  length: number;
}

interface Lane {
  pair: FaultyPair;
  /** Frames the client wrote on this connection, as the server received them. */
  frames: TappedFrame[];
}

function tappedRig(client: Partial<ClientConfig> = {}): { rig: Rig; lanes: Lane[] } {
  const lanes: Lane[] = [];
  const tap = (pair: FaultyPair): void => {
    const lane: Lane = { pair, frames: [] };
    lanes.push(lane);
    // After the server's own reader: a second 'data' listener sees every chunk it sees.
    const decoder = new FrameDecoder();
    pair.b.on('data', (chunk: Buffer) => {
      decoder.append(chunk);
      for (let frame = decoder.next(); frame !== null; frame = decoder.next()) {
        const { type, sessionId, seq, ack, length } = frame.header;
        lane.frames.push({ type, sessionId, seq, ack, length });
      }
    });
  };
  const rig = Rig.memory({ tap, client: { ...QUIET_TIMERS, expressLane: true, ...client }, server: QUIET_TIMERS });
  return { rig, lanes };
}

const SEQUENCED = new Set([PacketType.Open, PacketType.Data, PacketType.DataAckRequest, PacketType.Fin, PacketType.Reset]);

/** Payload bytes of a session's sequenced frames on a lane. */
function sessionBytes(lane: Lane, sessionId: number): number {
  return lane.frames.filter((f) => f.sessionId === sessionId && SEQUENCED.has(f.type)).reduce((sum, f) => sum + f.length, 0);
}

function sequencedOf(lane: Lane, sessionId: number): TappedFrame[] {
  return lane.frames.filter((f) => f.sessionId === sessionId && SEQUENCED.has(f.type));
}

/** The client's lone ACKs for a session on a lane. */
function loneAcksOf(lane: Lane, sessionId: number): TappedFrame[] {
  return lane.frames.filter((f) => f.sessionId === sessionId && f.type === PacketType.Ack);
}

async function upWithLane(rig: Rig, lanes: Lane[]): Promise<void> {
  await rig.nextUp();
  await settle();
  expect(lanes).toHaveLength(2);
  expect(lanes[1]?.frames[0]?.type).toBe(PacketType.Join);
  expect(rig.client.hasExpressLane).toBe(true);
}

describe('endpoints: the express lane', () => {
  it('joins each link: keystrokes go on it, a bulk session stays on the main lane, both intact', async () => {
    const { rig, lanes } = tappedRig();
    await upWithLane(rig, lanes);
    const [main, express] = lanes as [Lane, Lane];

    const bulk = rig.open();
    const bulkData = randomBytes(4 * 1024 * 1024);
    bulk.end(bulkData);
    const keys = rig.open();
    const bulkGot = new Received(await rig.serverSession(0));
    for (let i = 0; i < 20; i++) {
      keys.write(`k${i % 10}`);
      await settle();
    }
    keys.end();
    const keysGot = new Received(await rig.serverSession(1));
    await bulkGot.ended;
    await keysGot.ended;

    expect(bulkGot.digest()).toBe(sha256(bulkData));
    expect(keysGot.text).toBe('k0k1k2k3k4k5k6k7k8k9k0k1k2k3k4k5k6k7k8k9');
    // Every byte of the bulk went on the main lane, every keystroke (and its OPEN and FIN) on the express lane.
    expect(sessionBytes(main, bulk.id)).toBe(bulkData.length);
    expect(sessionBytes(express, bulk.id)).toBe(0);
    expect(sequencedOf(main, keys.id)).toEqual([]);
    expect(sequencedOf(express, keys.id).map((f) => f.type)).toEqual([PacketType.Open, ...Array<PacketType>(20).fill(PacketType.Data), PacketType.Fin]);
    // Resume packets and GOAWAY stay on the main lane.
    expect(express.frames.some((f) => f.type === PacketType.Sync || f.type === PacketType.SyncEnd)).toBe(false);
    expect(rig.errorsOf(bulk)).toEqual([]);
  });

  it('a session changes lanes only once its packets on the other are acknowledged, so they arrive in order', async () => {
    const { rig, lanes } = tappedRig();
    await upWithLane(rig, lanes);
    const [main, express] = lanes as [Lane, Lane];
    const session = rig.open();
    session.write('small');
    const got = new Received(await rig.serverSession(0));
    await got.atLeast(5);
    expect(sessionBytes(express, session.id)).toBe(5);

    // A backlog past the express lane's share: the session moves to the main lane...
    const big = randomBytes(EXPRESS_BACKLOG_BYTES * 8);
    session.write(big);
    await got.atLeast(5 + big.length);
    expect(sessionBytes(main, session.id)).toBe(big.length);

    // ...and stays there while anything of it is in flight: the main lane is held (a slow path),
    // and a keystroke written now must not overtake the bulk on the express lane.
    main.pair.blockWrites(main.pair.a);
    session.write(randomBytes(EXPRESS_BACKLOG_BYTES * 2));
    await settle();
    session.write('k');
    await settle();
    expect(sessionBytes(express, session.id)).toBe(5);
    main.pair.resume();
    await got.atLeast(5 + big.length + EXPRESS_BACKLOG_BYTES * 2 + 1);
    expect(got.text.endsWith('k')).toBe(true);
    expect(rig.errorsOf(session)).toEqual([]);

    // Once all of it is acknowledged, a keystroke goes on the express lane again.
    await rig.advanceUntil(() => session.inFlightBytes === 0);
    session.write('z');
    await got.atLeast(5 + big.length + EXPRESS_BACKLOG_BYTES * 2 + 2);
    expect(sequencedOf(express, session.id).at(-1)?.length).toBe(1);
    // On each lane the session's seqs only go up, and the lanes' runs do not interleave.
    const seqs = [...sequencedOf(main, session.id), ...sequencedOf(express, session.id)].map((f) => f.seq);
    expect(new Set(seqs).size).toBe(seqs.length);
  });

  it('lone acks go on the main lane while the client has nothing in flight there, on the express lane beside its upload', async () => {
    const { rig, lanes } = tappedRig();
    await upWithLane(rig, lanes);
    const [main, express] = lanes as [Lane, Lane];
    const download = rig.open();
    download.write('get');
    const got = new Received(download);
    const atServer = await rig.serverSession(0);
    // A download alone: the client's acks are all it sends, and the main lane is otherwise idle.
    const first = randomBytes(512 * 1024);
    atServer.write(first);
    await got.atLeast(first.length);
    await rig.advanceUntil(() => atServer.inFlightBytes === 0);
    expect(loneAcksOf(main, download.id).length).toBeGreaterThan(0);
    expect(loneAcksOf(express, download.id)).toEqual([]);

    // An upload held in flight on the main lane (its connection is stalled): acks would wait
    // behind it there, so they take the express lane.
    const upload = rig.open();
    main.pair.blockWrites(main.pair.a);
    upload.write(randomBytes(EXPRESS_BACKLOG_BYTES * 4));
    await settle();
    const mainAcksBefore = loneAcksOf(main, download.id).length;
    const second = randomBytes(256 * 1024);
    atServer.write(second);
    await got.atLeast(first.length + second.length);
    await rig.advanceUntil(() => atServer.inFlightBytes === 0);
    expect(loneAcksOf(express, download.id).length).toBeGreaterThan(0);
    main.pair.resume();
    await settle();
    expect(loneAcksOf(main, download.id)).toHaveLength(mainAcksBefore);
    expect(got.digest()).toBe(sha256(Buffer.concat([first, second])));
    expect(rig.errorsOf(upload)).toEqual([]);
  });

  it("typing ahead of the round trip: an echo's ack rides on the next keystroke, or goes alone when its hold ends; otherwise the usual delay", async () => {
    const { rig, lanes } = tappedRig();
    await upWithLane(rig, lanes);
    const express = lanes[1] as Lane;
    const loneAcks = (): number => lanes.reduce((sum, lane) => sum + loneAcksOf(lane, keys.id).length, 0);
    const keys = rig.open();
    const echoes = new Received(keys);
    keys.write('a');
    const atServer = await rig.serverSession(0);
    await rig.advanceUntil(() => keys.inFlightBytes === 0);
    /** The echo is held on its way (a long round trip) while the next key goes out: it arrives with that key in flight. */
    const echoBehindKey = async (echo: string, key: string): Promise<void> => {
      express.pair.blockWrites(express.pair.b);
      atServer.write(echo);
      await settle();
      keys.write(key);
      await settle();
      express.pair.resume();
      await echoes.atLeast(echoes.text.length + echo.length);
    };

    // Five times the usual delay: the echo's ack is still held, for the next keystroke, which carries it.
    await echoBehindKey('A', 'b');
    await rig.clock.advance(DEFAULT_ENGINE_CONFIG.ackDelayMs * 5);
    await settle();
    expect(loneAcks()).toBe(0);
    expect(atServer.inFlightBytes).toBe(1);
    keys.write('c');
    await settle();
    expect(sequencedOf(express, keys.id).at(-1)?.length).toBe(1);
    expect(atServer.inFlightBytes).toBe(0);
    expect(loneAcks()).toBe(0);

    // No keystroke follows: the ack goes alone once its hold is over (on the main lane, idle here).
    await echoBehindKey('B', 'd');
    await rig.clock.advance(ACK_HOLD_MAX_MS - 1);
    await settle();
    expect(loneAcks()).toBe(0);
    await rig.clock.advance(1);
    await settle();
    expect(loneAcks()).toBe(1);
    expect(atServer.inFlightBytes).toBe(0);

    // Nothing of its own in flight (the typist stopped; or the peer waits for this ack to change
    // lanes): the usual delay.
    await rig.advanceUntil(() => keys.inFlightBytes === 0);
    const before = loneAcks();
    atServer.write('C');
    await echoes.atLeast(3);
    await rig.clock.advance(DEFAULT_ENGINE_CONFIG.ackDelayMs);
    await settle();
    expect(loneAcks()).toBe(before + 1);

    // Two packets waiting (output, not an echo): the usual delay too.
    express.pair.blockWrites(express.pair.b);
    atServer.write('D');
    await settle();
    atServer.write('E');
    await settle();
    keys.write('e');
    await settle();
    express.pair.resume();
    await echoes.atLeast(5);
    await rig.clock.advance(DEFAULT_ENGINE_CONFIG.ackDelayMs);
    await settle();
    expect(loneAcks()).toBe(before + 2);
    expect(echoes.text).toBe('ABCDE');
  });

  it('the link goes down with its lane; the next link resumes every session and gets a lane of its own', async () => {
    const { rig, lanes } = tappedRig({ reconnectBaseDelayMs: 1, reconnectMaxDelayMs: 1 });
    await upWithLane(rig, lanes);
    const session = rig.open();
    session.write('before');
    const got = new Received(await rig.serverSession(0));
    await got.atLeast(6);
    const resumed = rig.nextUp();
    lanes[1]?.pair.cut();
    await resumed;
    await settle();
    expect(lanes).toHaveLength(4);
    expect(rig.client.hasExpressLane).toBe(true);
    session.end('after');
    await got.ended;
    expect(got.text).toBe('beforeafter');
    expect(rig.ups[1]?.summary).toMatchObject({ sessions: 1, lostSessions: 0 });
  });

  it('a server that does not take the JOIN: three tries a second apart, then one connection carries everything', async () => {
    const { rig, lanes } = tappedRig();
    let dials = 1;
    // An older sproxy: the second connection ends at its first packet, an unknown type to it.
    rig.mode = 'custom';
    rig.customDial = () => {
      dials++;
      const [near, far] = MemorySocket.pair();
      far.once('data', () => far.destroy());
      return near;
    };
    await rig.nextUp();
    await rig.advanceUntil(() => dials === 4, 10_000);
    await rig.clock.advance(5000);
    expect(dials).toBe(4);
    // Each try a second after the last one failed (the manual clock runs I/O only when it moves).
    const [, first, second, third] = rig.dialTimes as [number, number, number, number];
    expect(second - first).toBeGreaterThanOrEqual(1000);
    expect(third - second).toBe(1000);
    expect(rig.client.hasExpressLane).toBe(false);
    const session = rig.open();
    session.end('still carried');
    const got = new Received(await rig.serverSession(0));
    await got.ended;
    expect(got.text).toBe('still carried');
    expect(sequencedOf(lanes[0] as Lane, session.id).length).toBeGreaterThan(0);
  });

  it('sproxy refuses a JOIN for a client it does not hold, and one with the wrong resume token', async () => {
    const { rig } = tappedRig();
    await rig.nextUp();
    await settle();
    const join = async (clientId: Buffer, token: Buffer): Promise<{ code: number; reason: string }> => {
      const pair = new FaultyPair();
      rig.server.handleConnection(pair.b, 'intruder');
      const decoder = new FrameDecoder();
      const answer = new Promise<{ code: number; reason: string }>((resolve) =>
        pair.a.on('data', (chunk: Buffer) => {
          decoder.append(chunk);
          const frame = decoder.next();
          if (frame?.header.type === PacketType.GoAway) resolve({ code: frame.header.ack, reason: frame.payload.toString('utf8') });
        }),
      );
      pair.a.write(encodePacket({ type: PacketType.Join, sessionId: LINK_SESSION_ID, seq: 0, ack: 0, length: HELLO_PAYLOAD_BYTES }, encodeHello(clientId, token)));
      return answer;
    };
    const unknown = await join(randomBytes(16), randomBytes(32));
    expect(unknown.code).toBe(GoAwayCode.Closing);
    expect(unknown.reason).toMatch(/^express lane for client [0-9a-f]{8} refused: no such client$/);
    const wrongToken = await join(rig.client.clientId, randomBytes(32));
    expect(wrongToken.code).toBe(GoAwayCode.Authentication);
    expect(rig.client.state).toBe('up');
  });
});
