import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { type Dialer } from '../../../common/endpoints/client-endpoint.js';
import type { ClientConfig } from '../../../common/endpoints/config.js';
import { HandshakeError, LinkClosedError, SessionLostError } from '../../../common/support/errors.js';
import { PacketType } from '../../../common/protocol/constants.js';
import { encodeHeader } from '../../../common/protocol/header.js';
import { noteKeyExchange } from '../../../common/transport/dial-link.js';
import { useCleanup } from '../../helpers/cleanup.js';
import { connectionResetError, FaultyPair, MemorySocket, settle } from '../../helpers/duplex-pair.js';
import { ManualClock } from '../../helpers/manual-clock.js';
import { openedSession, QUIET_TIMERS, Received, Rig, sha256, writeAll, HEARTBEAT } from '../../helpers/endpoint-rig.js';

const onCleanup = useCleanup();


describe('endpoints: sessions over a link', () => {
  it('a session carries data both ways and closes cleanly on both sides', async () => {
    const rig = Rig.memory();
    const up = await rig.nextUp();
    expect(up).toMatchObject({ attempts: 1, downMs: null, knownClient: false });
    // The client is up on the server's SYNC_END; the server, on the client's, which may come later.
    await settle();
    expect(rig.clientUps).toMatchObject([{ clientId: rig.client.clientId.toString('hex'), peer: 'memory-1', resumed: false }]);

    const atClient = rig.open();
    const fromServer = new Received(atClient);
    atClient.end('hello from the client');
    const atServer = await rig.serverSession(0);
    expect(rig.contexts[0]).toEqual({ clientId: rig.client.clientId.toString('hex'), peer: 'memory-1', target: null });
    const fromClient = new Received(atServer);
    await fromClient.ended;
    expect(fromClient.text).toBe('hello from the client');

    atServer.end('hello from the server');
    await fromServer.ended;
    expect(fromServer.text).toBe('hello from the server');
    await settle();
    expect(rig.clientFinished.map((f) => f.reason)).toEqual(['closed']);
    expect(rig.serverFinished.map((f) => f.reason)).toEqual(['closed']);
    expect(rig.client.sessionCount).toBe(0);
    expect(rig.errorsOf(atClient)).toEqual([]);
    expect(rig.errorsOf(atServer)).toEqual([]);
  });

  it('with confirmOpens the OPEN is acknowledged only when the server confirms it: "established" then, never before a RESET', async () => {
    const rig = Rig.memory({ confirmOpens: true });
    await rig.nextUp();
    const confirmed = rig.open();
    let established = false;
    confirmed.once('established', () => {
      established = true;
    });
    confirmed.write('early bytes');
    const atServer = await rig.serverSession(0);
    await settle();
    expect(established).toBe(false);
    expect(confirmed.unackedPackets).toBe(2); // the OPEN and the early DATA, both held
    atServer.confirmOpen();
    const fromClient = new Received(atServer);
    await settle();
    expect(established).toBe(true);
    expect(confirmed.unackedPackets).toBe(0);
    expect(fromClient.text).toBe('early bytes');

    // Destroyed before it is confirmed (its target refused): a RESET, and no "established" first.
    const refused = rig.open();
    const events: string[] = [];
    refused.once('established', () => events.push('established'));
    refused.on('error', (error) => events.push(`error: ${error.message}`));
    const refusedAtServer = await rig.serverSession(1);
    await settle();
    refusedAtServer.on('error', () => {});
    refusedAtServer.destroy(new Error('target 127.0.0.1:9 unreachable: connect ECONNREFUSED 127.0.0.1:9'));
    await settle();
    expect(events).toEqual(['error: session reset by peer: target 127.0.0.1:9 unreachable: connect ECONNREFUSED 127.0.0.1:9']);
  });

  it('with confirmOpens, a session refused while the link is down is not taken as answered by the resume: its RESET alone acks the OPEN', async () => {
    const rig = Rig.memory({ confirmOpens: true });
    await rig.nextUp();
    const atClient = rig.open();
    const events: string[] = [];
    atClient.once('established', () => events.push('established'));
    atClient.on('error', (error) => events.push(`error: ${error.message}`));
    const atServer = await rig.serverSession(0);
    await settle();
    rig.mode = 'refuse';
    rig.cut();
    await settle();
    atServer.on('error', () => {});
    atServer.destroy(new Error('target 127.0.0.1:9 unreachable: connect ECONNREFUSED 127.0.0.1:9'));
    rig.mode = 'accept';
    await rig.advanceUntil(() => rig.ups.length === 2);
    await settle();
    // Were the held ack released by the destroy, the server's SYNC would ack the OPEN: "established" first.
    expect(events).toEqual(['error: session reset by peer: target 127.0.0.1:9 unreachable: connect ECONNREFUSED 127.0.0.1:9']);
  });

  it('the server times the path at link-up (a probe the client answers), before it has sent anything', async () => {
    // The server's WELCOME and probe are held 40 ms (clock time), as a path's round trip would hold them.
    const held: FaultyPair[] = [];
    const hold = (pair: FaultyPair): void => {
      pair.blockWrites(pair.b);
      held.push(pair);
    };
    const rig = Rig.memory({ client: QUIET_TIMERS, server: QUIET_TIMERS, tap: (pair) => pair.b.once('data', () => hold(pair)) });
    const up = rig.nextUp();
    await rig.advanceUntil(() => held.length > 0);
    const pair = held[0] as FaultyPair;
    await rig.clock.advance(40);
    pair.resume();
    await up;
    await settle();
    expect(rig.server.linkedClientPaths()[0]?.minRttMs).toBe(40);
    expect(rig.server.sessionCount).toBe(0);
  });

  it('carries many sessions at once, each intact', async () => {
    const rig = Rig.memory();
    const count = 20;
    const payloads = Array.from({ length: count }, () => randomBytes(50_000));
    const sessions = payloads.map((payload) => {
      const session = rig.open();
      void writeAll(session, payload, 7000);
      return session;
    });
    const received = await Promise.all(
      sessions.map(async (_session, index) => {
        const atServer = await rig.serverSession(index);
        const got = new Received(atServer);
        await got.ended;
        return got;
      }),
    );
    // Sessions are numbered in the order the client opened them.
    expect(rig.serverSessions.map((session) => session.id)).toEqual(sessions.map((session) => session.id));
    received.forEach((got, index) => expect(got.digest()).toBe(sha256(payloads[index] as Buffer)));
  });

  it('sessions opened while the link is down (or before it ever came up) work once it returns', async () => {
    const rig = Rig.memory({ mode: 'refuse' });
    await settle();
    expect(rig.retries).toHaveLength(1);
    const early = rig.open();
    const earlyReply = new Received(early);
    early.end('opened before any link');

    rig.mode = 'accept';
    await rig.advanceUntil(() => rig.ups.length === 1);
    const earlyAtServer = await rig.serverSession(0);
    const earlyGot = new Received(earlyAtServer);
    await earlyGot.ended;
    expect(earlyGot.text).toBe('opened before any link');
    earlyAtServer.end('reply 1');
    await earlyReply.ended;
    expect(earlyReply.text).toBe('reply 1');

    rig.mode = 'refuse';
    rig.cut();
    await settle();
    expect(rig.downs).toHaveLength(1);
    const late = rig.open();
    const lateReply = new Received(late);
    late.end('opened while the link was down');
    await settle();
    expect(rig.serverSessions).toHaveLength(1);

    rig.mode = 'accept';
    await rig.advanceUntil(() => rig.ups.length === 2);
    const lateAtServer = await rig.serverSession(1);
    const lateGot = new Received(lateAtServer);
    await lateGot.ended;
    expect(lateGot.text).toBe('opened while the link was down');
    lateAtServer.end('reply 2');
    await lateReply.ended;
    expect(lateReply.text).toBe('reply 2');
    expect(rig.errorsOf(late)).toEqual([]);
  });
  // Regression: the server used to forget a client that held no session when its link died
  // (server-endpoint.ts #onLinkDown), and then answered its return with WELCOME "unknown client";
  // the client took that for lost state and closed a session whose OPEN had merely died with the link.
  it('an OPEN lost with the link is replayed, not lost, when the server held no other session', async () => {
    const rig = Rig.memory();
    await rig.nextUp();
    await settle();
    rig.pair.pause();
    const session = rig.open();
    const reply = new Received(session);
    session.write('opened as the link died');
    await settle();
    expect(rig.serverSessions).toEqual([]);

    const resumed = rig.nextUp();
    rig.cut();
    const info = await resumed;
    expect(info).toMatchObject({ knownClient: true, summary: { sessions: 1, lostSessions: 0 } });
    const atServer = await rig.serverSession(0);
    const got = new Received(atServer);
    await got.atLeast('opened as the link died'.length);
    expect(got.text).toBe('opened as the link died');
    atServer.write('ok');
    await reply.atLeast(2);
    expect(rig.errorsOf(session)).toEqual([]);
    expect(rig.clientFinished).toEqual([]);
  });

  it('the client gives up on its sessions after resumeWindowMs without reaching the server', async () => {
    const rig = Rig.memory({ client: { resumeWindowMs: 10_000 }, random: () => 0 });
    await rig.nextUp();
    const { atClient } = await openedSession(rig);
    rig.mode = 'refuse';
    rig.cut();
    await settle();

    await rig.clock.advance(9999);
    expect(rig.clientFinished).toEqual([]);
    expect(rig.retries.length).toBeGreaterThan(5);
    await rig.clock.advance(1);
    expect(rig.clientFinished.map((f) => [f.reason, f.detail])).toEqual([
      ['lost', 'the server could not be reached within the resume window'],
    ]);
    expect(rig.errorsOf(atClient)[0]).toBeInstanceOf(SessionLostError);
    expect(rig.client.sessionCount).toBe(0);
    // It keeps trying to reach the server for new sessions.
    expect(rig.client.state).not.toBe('closed');
  });
});

describe.each(['memory', 'tcp'] as const)('endpoints over %s: link cuts mid-transfer', (transport) => {
  it('every byte arrives exactly once and in order, both ways, across 5 cuts', async () => {
    const rig = await Rig.start({
      transport,
      // A 1 ms guard against redial loops: each cut below waits it out in 1 ms, firing no other
      // timer (the manual clock lets in-memory I/O run to completion after each one it fires, which
      // would finish the transfer before the first cut).
      client: { ...QUIET_TIMERS, windowBytes: 256 * 1024, reconnectBaseDelayMs: 1, reconnectMaxDelayMs: 1 },
      server: { ...QUIET_TIMERS, windowBytes: 256 * 1024 },
    });
    await rig.nextUp();
    const upstream = randomBytes(3 * 1024 * 1024);
    const downstream = randomBytes(3 * 1024 * 1024);

    const atClient = rig.open();
    const atClientGot = new Received(atClient);
    const writing = [writeAll(atClient, upstream)];
    const atServer = await rig.serverSession(0);
    const atServerGot = new Received(atServer);
    writing.push(writeAll(atServer, downstream));

    const cuts = 5;
    let resent = 0;
    for (let cut = 1; cut <= cuts; cut++) {
      await atServerGot.atLeast((cut * upstream.length) / (cuts + 1));
      // Past the guard against redial loops, so that this loss is redialled at once.
      await rig.clock.advance(1);
      const resumed = rig.nextUp();
      rig.cut();
      const info = await resumed;
      expect(info.knownClient).toBe(true);
      expect(info.summary.lostSessions).toBe(0);
      resent += info.summary.resentPackets;
    }
    await Promise.all([...writing, atServerGot.ended, atClientGot.ended]);

    expect(atServerGot.bytes).toBe(upstream.length);
    expect(atServerGot.digest()).toBe(sha256(upstream));
    expect(atClientGot.bytes).toBe(downstream.length);
    expect(atClientGot.digest()).toBe(sha256(downstream));
    expect(rig.downs).toHaveLength(cuts);
    expect(rig.downs.every((error) => error instanceof LinkClosedError)).toBe(true);
    expect(rig.ups).toHaveLength(cuts + 1);
    expect(rig.clientUps.slice(1).every((info) => info.resumed)).toBe(true);
    // The cuts hit data in flight: some of it had to be sent again.
    expect(resent).toBeGreaterThan(0);
    expect(rig.errorsOf(atClient)).toEqual([]);
    expect(rig.errorsOf(atServer)).toEqual([]);
  });
});

describe('endpoints: reconnect', () => {
  it('spaces failed attempts by capped exponential delays with jitter', async () => {
    const randoms = [0, 0.999, 0.5, 0.25, 0.75, 0, 0.5];
    let draws = 0;
    const rig = Rig.memory({
      mode: 'refuse',
      client: { reconnectBaseDelayMs: 100, reconnectMaxDelayMs: 1000 },
      random: () => randoms[draws++ % randoms.length] as number,
    });
    // step = min(1000, 100 * 2^(n-1)); delay = round(step * (0.5 + random / 2)).
    const expectedDelays = [50, 200, 300, 500, 875, 500, 750];
    await settle();
    expect(rig.dialTimes).toEqual([0]);
    for (let i = 0; i < expectedDelays.length - 1; i++) {
      const delayMs = expectedDelays[i] as number;
      expect(rig.retries[i]).toEqual({ attempt: i + 1, delayMs, error: 'connect ECONNREFUSED' });
      const dials = rig.dialTimes.length;
      await rig.clock.advance(delayMs - 1);
      expect(rig.dialTimes).toHaveLength(dials);
      await rig.clock.advance(1);
      expect(rig.dialTimes).toHaveLength(dials + 1);
      expect(rig.dialTimes.at(-1)).toBe(rig.clock.now());
    }
    expect(rig.retries.map((retry) => retry.delayMs)).toEqual(expectedDelays);

    rig.mode = 'accept';
    const up = rig.nextUp();
    await rig.clock.advance(expectedDelays.at(-1) as number);
    expect(await up).toMatchObject({ attempts: 8, knownClient: false });
  });

  it('redials at once after a link loss, but not twice within reconnectMaxDelayMs', async () => {
    const rig = Rig.memory({ client: { reconnectBaseDelayMs: 100, reconnectMaxDelayMs: 1000 }, random: () => 0 });
    await rig.nextUp();
    await openedSession(rig);

    // First loss: the redial goes out in the same instant, without any timer.
    let resumed = rig.nextUp();
    rig.cut();
    const first = await resumed;
    expect(rig.dialTimes).toEqual([0, 0]);
    expect(rig.retries).toEqual([]);
    expect(first).toMatchObject({ attempts: 1, downMs: 0, knownClient: true });
    expect(rig.downs.map((error) => error.code)).toEqual(['ETCP_ERR_LINK_CLOSED']);

    // A second loss at once: backoff, so that a server that accepts and drops cannot drive a loop.
    resumed = rig.nextUp();
    rig.cut();
    await settle();
    expect(rig.dialTimes).toEqual([0, 0]);
    expect(rig.retries).toEqual([{ attempt: 1, delayMs: 50, error: 'socket error: read ECONNRESET' }]);
    await rig.clock.advance(49);
    expect(rig.dialTimes).toHaveLength(2);
    await rig.clock.advance(1);
    expect(await resumed).toMatchObject({ attempts: 2, downMs: 50 });

    // Once reconnectMaxDelayMs has passed since the last immediate redial, the next loss is redialled at once again.
    await rig.clock.advance(950);
    resumed = rig.nextUp();
    rig.cut();
    await resumed;
    expect(rig.dialTimes).toEqual([0, 0, 50, 1000]);
    expect(rig.retries).toHaveLength(1);
  });

  // connectStaggerMs = connectTimeoutMs: attempts never overlap (see 'overlapping connect attempts').
  it('without overlap, abandons an attempt after connectTimeoutMs and, the wait being done, tries again at once', async () => {
    const rig = Rig.memory({ mode: 'hang', client: { connectTimeoutMs: 2000, connectStaggerMs: 2000 }, random: () => 0 });
    await rig.clock.advance(1999);
    expect(rig.retries).toEqual([]);
    expect(rig.dialTimes).toEqual([0]);
    expect(rig.client.state).toBe('connecting');
    await rig.clock.advance(1);
    expect(rig.retries).toEqual([{ attempt: 1, delayMs: 0, error: 'connect timed out after 2000 ms' }]);
    // The second attempt went out at once, into the path that still swallows everything.
    expect(rig.dialTimes).toEqual([0, 2000]);
    expect(rig.client.state).toBe('connecting');
    rig.mode = 'accept';
    await rig.advanceUntil(() => rig.ups.length === 1);
    expect(rig.ups[0]?.attempts).toBe(3);
  });

  it.each([
    ['a far end that swallows bytes', false],
    ['a far end that answers heartbeats but never WELCOME', true],
  ])('fails the handshake after deadAfterMs with %s, then retries', async (_name, sendsHeartbeats) => {
    const clock = new ManualClock();
    const silentEnds: MemorySocket[] = [];
    const customDial: Dialer = () => {
      const pair = new FaultyPair();
      pair.b.on('error', () => {});
      pair.b.resume();
      silentEnds.push(pair.b);
      if (sendsHeartbeats) {
        const timer = clock.setInterval(() => pair.b.write(HEARTBEAT), 1000);
        pair.b.once('close', () => timer.cancel());
      }
      return pair.a;
    };
    const rig = Rig.memory({
      clock,
      mode: 'custom',
      customDial,
      client: { heartbeatIntervalMs: 1000, deadAfterMs: 3000 },
      random: () => 0,
    });
    await settle();
    expect(silentEnds).toHaveLength(1);

    await clock.advance(2999);
    expect(rig.client.state).toBe('handshaking');
    expect(rig.retries).toEqual([]);
    await clock.advance(1);
    expect(rig.retries).toHaveLength(1);
    // Without heartbeats the dead-link deadline, due at the same instant, may report it first.
    expect(rig.retries[0]?.error).toMatch(
      sendsHeartbeats ? /^no WELCOME within 3000 ms$/ : /^(no WELCOME within 3000 ms|no packet from the peer for 3000 ms)$/,
    );
    expect(rig.client.state).toBe('waiting');
    expect(silentEnds[0]?.destroyed).toBe(true);
    expect(rig.ups).toEqual([]);

    rig.mode = 'accept';
    await rig.advanceUntil(() => rig.ups.length === 1);
    expect(rig.ups[0]?.attempts).toBe(2);
  });
});

/** An attempt that fails with `error` once its TLS handshake has used our key (as dialLink notes it). */
interface FailAfterKeyExchange {
  afterKeyExchange: Error;
}

type DialStep = 'hang' | 'refuse' | 'accept' | Error | FailAfterKeyExchange;

// Overlapping attempts with the default timings: a new one every 500 ms, each for 2 s.
const STAGGER: Partial<ClientConfig> = { connectTimeoutMs: 2000, connectStaggerMs: 500 };

/**
 * A rig whose dials follow `plan`, the last step repeating: the attempt hangs, is refused, is
 * accepted by the server, or fails with the given error. It keeps every socket dialled.
 */
function plannedRig(
  plan: DialStep[],
  client: Partial<ClientConfig> = STAGGER,
  random?: () => number,
): { rig: Rig; sockets: MemorySocket[] } {
  const sockets: MemorySocket[] = [];
  let rig: Rig | null = null;
  const accept = (): MemorySocket => {
    if (rig === null) throw new Error('the first dial happens in the constructor: it cannot be accepted here');
    const pair = new FaultyPair();
    rig.pairs.push(pair);
    rig.server.handleConnection(pair.b, `memory-${rig.pairs.length}`);
    return pair.a;
  };
  const customDial: Dialer = () => {
    const step = plan[Math.min(sockets.length, plan.length - 1)] as DialStep;
    const socket =
      step === 'accept' ? accept()
      : step === 'refuse' ? MemorySocket.refused()
      : step instanceof Error ? MemorySocket.refused(step)
      : typeof step === 'object' ? keyExchangeThenFail(step.afterKeyExchange)
      : new MemorySocket();
    sockets.push(socket);
    return socket;
  };
  rig = Rig.memory({ mode: 'custom', customDial, client, ...(random === undefined ? {} : { random }) });
  return { rig, sockets };
}

function keyExchangeThenFail(error: Error): MemorySocket {
  const socket = MemorySocket.refused(error);
  noteKeyExchange(socket);
  return socket;
}

/** Dialled sockets neither connected nor destroyed: the attempts in flight. */
function inFlight({ rig, sockets }: { rig: Rig; sockets: MemorySocket[] }): number {
  const connected = new Set(rig.pairs.map((pair) => pair.a));
  return sockets.filter((socket) => !socket.destroyed && !connected.has(socket)).length;
}

/** Advances timer by timer to `endMs`; the most attempts in flight after any timer. */
async function mostInFlightUntil(planned: { rig: Rig; sockets: MemorySocket[] }, endMs: number): Promise<number> {
  let most = inFlight(planned);
  while (planned.rig.clock.now() < endMs) {
    await planned.rig.clock.advanceTo(Math.min(endMs, planned.rig.clock.nextDueMs ?? endMs));
    most = Math.max(most, inFlight(planned));
  }
  return most;
}

describe('endpoints: overlapping connect attempts', () => {
  it('while a dial hangs, starts another every connectStaggerMs, never more than the cap in flight, and emits no retry', async () => {
    const planned = plannedRig(['hang']);
    const { rig } = planned;
    await rig.clock.advance(499);
    expect(rig.dialTimes).toEqual([0]);
    await rig.clock.advance(1);
    expect(rig.dialTimes).toEqual([0, 500]);
    await rig.clock.advance(500);
    expect(rig.dialTimes).toEqual([0, 500, 1000]);

    // Each attempt keeps its whole connect timeout; the cap is ceil(2000 / 500) = 4.
    expect(await mostInFlightUntil(planned, 10_000)).toBe(4);
    expect(rig.dialTimes).toEqual(Array.from({ length: 21 }, (_, i) => i * 500));
    expect(planned.sockets.slice(0, 17).every((socket) => socket.destroyed)).toBe(true);
    expect(rig.retries).toEqual([]);
    expect(rig.client.state).toBe('connecting');
  });

  it('one attempt every connectStaggerMs also when the timeout is not a multiple of it: ceil(1200 / 500) = 3 in flight', async () => {
    const planned = plannedRig(['hang'], { connectTimeoutMs: 1200, connectStaggerMs: 500 });
    expect(await mostInFlightUntil(planned, 5000)).toBe(3);
    expect(planned.rig.dialTimes).toEqual(Array.from({ length: 11 }, (_, i) => i * 500));
    expect(planned.rig.retries).toEqual([]);
  });

  it('at the cap of 8 in flight, the attempt that falls due waits until a pending one times out', async () => {
    const planned = plannedRig(['hang'], { connectTimeoutMs: 10_000, connectStaggerMs: 500 });
    const { rig } = planned;
    await rig.clock.advance(9999);
    expect(rig.dialTimes).toEqual(Array.from({ length: 8 }, (_, i) => i * 500));
    expect(inFlight(planned)).toBe(8);
    // The first attempt times out at 10 s: the attempt due since 4 s takes its place at once.
    await rig.clock.advance(1);
    expect(rig.dialTimes.slice(8)).toEqual([10_000]);
    await rig.clock.advance(500);
    expect(rig.dialTimes.slice(8)).toEqual([10_000, 10_500]);
    expect(inFlight(planned)).toBe(8);
    expect(rig.retries).toEqual([]);
  });

  it('when the second attempt connects first, the first is destroyed and the link comes up once', async () => {
    const { rig, sockets } = plannedRig(['hang', 'accept', 'hang']);
    const up = rig.nextUp();
    await rig.clock.advance(500);
    expect(rig.dialTimes).toEqual([0, 500]);
    // Two attempts: the abandoned one and the one that connected.
    expect(await up).toMatchObject({ attempts: 2, knownClient: false });
    expect(sockets[0]?.destroyed).toBe(true);
    expect(sockets[1]?.destroyed).toBe(false);
    expect(rig.client.state).toBe('up');

    // No further attempt, and nothing of the abandoned one (its timeout was due at 2 s) fires.
    await rig.clock.advance(5000);
    expect(rig.dialTimes).toEqual([0, 500]);
    expect(rig.pairs).toHaveLength(1);
    expect(rig.ups).toHaveLength(1);
    expect(rig.clientUps).toHaveLength(1);
    expect(rig.linkDowns).toEqual([]);
    expect(rig.retries).toEqual([]);
    await openedSession(rig);
  });

  it('an attempt that fails while another is pending emits no retry and schedules no backoff', async () => {
    const { rig, sockets } = plannedRig(['hang', 'refuse'], STAGGER, () => 0);
    await rig.clock.advance(500);
    await settle();
    expect(sockets[1]?.destroyed).toBe(true);
    expect(sockets[0]?.destroyed).toBe(false);
    expect(rig.retries).toEqual([]);
    expect(rig.client.state).toBe('connecting');
    // Only the stagger starts attempts meanwhile; each refused one is only counted.
    await rig.clock.advance(1499);
    expect(rig.dialTimes).toEqual([0, 500, 1000, 1500]);
    expect(rig.retries).toEqual([]);

    // The last pending attempt times out: the next goes at once, is refused, and now backs off,
    // every failure counted (step min(1000, 100 * 2^4), jitter 0.5).
    await rig.clock.advance(1);
    expect(rig.retries).toEqual([
      { attempt: 4, delayMs: 0, error: 'connect timed out after 2000 ms' },
      { attempt: 5, delayMs: 500, error: 'connect ECONNREFUSED' },
    ]);
    expect(rig.dialTimes).toEqual([0, 500, 1000, 1500, 2000]);
    expect(rig.client.state).toBe('waiting');
  });

  it('immediate refusals still back off, delays growing, one attempt per step', async () => {
    const rig = Rig.memory({
      mode: 'refuse',
      client: { ...STAGGER, reconnectBaseDelayMs: 100, reconnectMaxDelayMs: 1000 },
      random: () => 0,
    });
    await settle();
    await rig.clock.advance(3000);
    expect(rig.retries.map((retry) => retry.delayMs)).toEqual([50, 100, 200, 400, 500, 500, 500, 500, 500]);
    expect(rig.retries.map((retry) => retry.attempt)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    // Each dial follows the previous one's delay: no overlapping attempt slipped in.
    expect(rig.dialTimes).toEqual([0, 50, 150, 350, 750, 1250, 1750, 2250, 2750]);
  });

  /** OpenSSL's error for the peer's bad_record_mac alert, as each Node's OpenSSL words it. */
  const badRecordMacAlert = (code: string, reason: string): Error =>
    Object.assign(new Error(`error:0A0003FC:SSL routines:ssl3_read_bytes:${reason}`), { library: 'SSL routines', reason, code });
  const ALERTS_BY_OPENSSL = [
    ['OpenSSL 3.0 (Node 20)', badRecordMacAlert('ERR_SSL_SSLV3_ALERT_BAD_RECORD_MAC', 'sslv3 alert bad record mac')],
    ['OpenSSL 3.5 (Node 22, 24, 26)', badRecordMacAlert('ERR_SSL_SSL/TLS_ALERT_BAD_RECORD_MAC', 'ssl/tls alert bad record mac')],
    ['a TLS error no OpenSSL has yet', Object.assign(new Error('a future alert'), { code: 'ERR_SSL_SOME_FUTURE_ALERT' })],
  ] as const;

  it.each(ALERTS_BY_OPENSSL)(
    'a TLS error once our key is in use (%s) is an authentication failure: it ends the pending attempts',
    async (_openssl, alert) => {
      const { rig, sockets } = plannedRig(['hang', { afterKeyExchange: alert }], STAGGER, () => 0);
      await rig.clock.advance(500);
      await settle();
      expect(sockets[0]?.destroyed).toBe(true);
      expect(rig.retries).toHaveLength(1);
      expect(rig.retries[0]).toMatchObject({ attempt: 1, delayMs: 50 });
      expect(rig.retries[0]?.error).toMatch(/^TLS authentication with sproxy failed: our keys differ \(is the same shared secret given to both\?\)/);
      expect(rig.client.state).toBe('waiting');
    },
  );

  it('authentication failures back off to 30 s, apart from the network backoff, and start again after a link came up', async () => {
    const wrongKey = { afterKeyExchange: ALERTS_BY_OPENSSL[1][1] };
    const plan: DialStep[] = [...Array.from({ length: 9 }, () => wrongKey), 'refuse', 'refuse', 'accept', wrongKey];
    const { rig } = plannedRig(plan, STAGGER, () => 0);
    await rig.advanceUntil(() => rig.ups.length === 1);
    // With jitter 0, half of each step: 100, 200 ms (the network's) before giving up, then 1, 2, 4 … 30 s.
    const authDelays = [50, 100, 500, 1000, 2000, 4000, 8000, 15_000, 15_000];
    // sproxy down meanwhile: the network backoff, at its usual 1 s cap, whatever the authentication failures did.
    const refusedDelays = [500, 500];
    expect(rig.retries.map((retry) => retry.delayMs)).toEqual([...authDelays, ...refusedDelays]);
    expect(rig.client.authenticationFailed).toBe(false); // the link came up

    // A link came up: the count starts again, and a failure now is retried soon.
    rig.cut();
    await settle();
    expect(rig.retries).toHaveLength(authDelays.length + refusedDelays.length + 1);
    expect(rig.retries.at(-1)).toMatchObject({ delayMs: 50, error: expect.stringMatching(/^TLS authentication with sproxy failed/) });
    expect(rig.client.authenticationFailed).toBe(false);
  });

  it.each([
    ['the same TLS error before our key was used (a server without the PSK suite)', ALERTS_BY_OPENSSL[1][1]],
    ['a reset once our key is in use (the path, not the key)', { afterKeyExchange: connectionResetError() }],
  ] as const)('%s is an ordinary failed attempt: the others stay pending', async (_name, failure) => {
    const { rig, sockets } = plannedRig(['hang', failure], STAGGER, () => 0);
    await rig.clock.advance(500);
    await settle();
    expect(sockets[0]?.destroyed).toBe(false);
    expect(rig.retries).toEqual([]);
    expect(rig.client.state).toBe('connecting');
  });

  it('close() destroys every pending attempt and dials no more', async () => {
    const planned = plannedRig(['hang']);
    const { rig, sockets } = planned;
    await rig.clock.advance(1500);
    expect(inFlight(planned)).toBe(4);
    rig.client.close('test over');
    expect(sockets.every((socket) => socket.destroyed)).toBe(true);
    await rig.clock.advance(10_000);
    expect(rig.dialTimes).toHaveLength(4);
    expect(rig.retries).toEqual([]);
    expect(rig.client.state).toBe('closed');
  });
});

describe('endpoints: the server side of a link', () => {
  it('a new link from the same client supersedes the old one at once, while the old path is silently paused', async () => {
    // The server would notice the dead link only after 10 s; the client's dead-link timeout after 3 s.
    const rig = Rig.memory({
      client: { heartbeatIntervalMs: 1000, deadAfterMs: 3000 },
      server: { heartbeatIntervalMs: 1000, deadAfterMs: 10_000 },
    });
    await rig.nextUp();
    const { atClient, atServer } = await openedSession(rig);
    const atServerGot = new Received(atServer);
    const atClientGot = new Received(atClient);
    const oldPair = rig.pair;

    oldPair.pause();
    atClient.write('written during the outage');
    const resumed = rig.nextUp();
    // The bytes wait for an ack: at the first look 300 ms on (t=400, they went at t=10), the client
    // probes the link, and with no answer 200 ms later it makes a second link (make before break),
    // which sproxy takes in place of the old.
    await rig.clock.advance(600);
    const info = await resumed;

    expect(rig.downs).toEqual([]); // the sessions were never down
    expect(rig.pairs).toHaveLength(2);
    expect(info).toMatchObject({ attempts: 1, knownClient: true, summary: { sessions: 1, lostSessions: 0 } });
    expect(rig.clientUps.at(-1)).toMatchObject({ peer: 'memory-2', resumed: true });
    // The old link is closed by the server the moment the new one says HELLO, well before its own deadline.
    expect(rig.clock.now()).toBe(600);
    expect(rig.dialTimes).toEqual([0, 600]);
    expect(oldPair.b.destroyed).toBe(true);
    expect(rig.linkDowns.filter((down) => down.error.code === 'ETCP_ERR_LINK_DEAD')).toEqual([]);
    expect(rig.server.clientCount).toBe(1);

    await atServerGot.atLeast('written during the outage'.length);
    expect(atServerGot.text).toBe('written during the outage');
    atServer.write('and back');
    await atClientGot.atLeast('and back'.length);
    expect(atClientGot.text).toBe('and back');

    // Nothing of the old link comes back to haunt the session, even past the server's deadline.
    await rig.clock.advance(20_000);
    expect(rig.ups).toHaveLength(2);
    expect(rig.expired).toEqual([]);
    expect(rig.errorsOf(atClient)).toEqual([]);
    expect(rig.errorsOf(atServer)).toEqual([]);
  });

  it('drops the client\'s sessions after resumeWindowMs without a link, and the client learns they are lost', async () => {
    const rig = Rig.memory({ server: { resumeWindowMs: 5000 }, random: () => 0 });
    await rig.nextUp();
    const first = await openedSession(rig);
    const second = await openedSession(rig);

    rig.mode = 'refuse';
    rig.cut();
    await settle();
    expect(rig.linkDowns.map((down) => down.error.code)).toEqual(['ETCP_ERR_LINK_CLOSED']);

    await rig.clock.advance(4999);
    expect(rig.expired).toEqual([]);
    expect(rig.serverFinished).toEqual([]);
    expect(rig.server.clientCount).toBe(1);

    await rig.clock.advance(1);
    expect(rig.expired).toEqual([{ clientId: rig.client.clientId.toString('hex'), sessions: 2 }]);
    expect(rig.serverFinished.map((f) => [f.session, f.reason, f.detail])).toEqual([
      [first.atServer, 'lost', 'resume window expired'],
      [second.atServer, 'lost', 'resume window expired'],
    ]);
    for (const session of [first.atServer, second.atServer]) {
      expect(rig.errorsOf(session)).toHaveLength(1);
      expect(rig.errorsOf(session)[0]).toBeInstanceOf(SessionLostError);
    }
    expect(rig.server.clientCount).toBe(0);
    // The client still holds its sessions: it cannot know yet.
    expect(rig.client.sessionCount).toBe(2);

    rig.mode = 'accept';
    await rig.advanceUntil(() => rig.ups.length === 2);
    expect(rig.ups[1]).toMatchObject({ knownClient: false, summary: { sessions: 0, lostSessions: 2 } });
    expect(rig.clientFinished.map((f) => f.reason)).toEqual(['lost', 'lost']);
    for (const session of [first.atClient, second.atClient]) {
      const [error] = rig.errorsOf(session);
      expect(error).toBeInstanceOf(SessionLostError);
      expect(error?.message).toMatch(/^sproxy no longer holds session \d+/);
    }
    expect(rig.client.sessionCount).toBe(0);
  });

  it('a client GOAWAY (client.close()) makes the server drop its sessions at once', async () => {
    const rig = Rig.memory();
    await rig.nextUp();
    const first = await openedSession(rig);
    const second = await openedSession(rig);

    rig.client.close('user quit');
    expect(rig.client.state).toBe('closed');
    await settle();
    expect(rig.serverFinished.map((f) => [f.session, f.reason, f.detail])).toEqual([
      [first.atServer, 'lost', 'client closed: user quit'],
      [second.atServer, 'lost', 'client closed: user quit'],
    ]);
    expect(rig.server.clientCount).toBe(0);
    expect(rig.clientFinished.map((f) => [f.reason, f.detail])).toEqual([
      ['lost', 'user quit'],
      ['lost', 'user quit'],
    ]);
    expect(rig.errorsOf(first.atClient)[0]).toBeInstanceOf(SessionLostError);

    // No redial and no expiry later: the client is gone for good.
    const dials = rig.dialTimes.length;
    await rig.clock.advance(rig.server.config.resumeWindowMs + 1);
    expect(rig.dialTimes).toHaveLength(dials);
    expect(rig.expired).toEqual([]);
  });

  it('a server GOAWAY (server.close()) makes the client close its sessions with a clear reason', async () => {
    const rig = Rig.memory();
    await rig.nextUp();
    const { atClient } = await openedSession(rig);
    rig.server.close('maintenance');
    await settle();
    expect(rig.clientFinished.map((f) => [f.reason, f.detail])).toEqual([['lost', 'sproxy closed the link: maintenance']]);
    expect(rig.errorsOf(atClient)[0]).toBeInstanceOf(SessionLostError);
  });

  it('ends a link that does not say HELLO within deadAfterMs, even if it sends heartbeats', async () => {
    const rig = Rig.memory({ mode: 'hang', server: { heartbeatIntervalMs: 1000, deadAfterMs: 3000 } });
    const [stranger, serverEnd] = MemorySocket.pair();
    stranger.on('error', () => {});
    stranger.resume();
    const heartbeats = rig.clock.setInterval(() => stranger.write(HEARTBEAT), 500);
    onCleanup(() => heartbeats.cancel());
    rig.server.handleConnection(serverEnd, 'stranger');
    expect(rig.server.pendingLinkCount).toBe(1);

    await rig.clock.advance(2999);
    expect(rig.linkDowns).toEqual([]);
    await rig.clock.advance(1);
    expect(rig.linkDowns).toHaveLength(1);
    expect(rig.linkDowns[0]).toMatchObject({ clientId: null, peer: 'stranger' });
    expect(rig.linkDowns[0]?.error).toBeInstanceOf(HandshakeError);
    expect(rig.linkDowns[0]?.error.message).toBe('no HELLO within 3000 ms');
    expect(rig.server.pendingLinkCount).toBe(0);
  });

  it('ends a link whose first packet is not HELLO', async () => {
    const rig = Rig.memory({ mode: 'hang' });
    const [stranger, serverEnd] = MemorySocket.pair();
    stranger.on('error', () => {});
    stranger.resume();
    rig.server.handleConnection(serverEnd, 'stranger');
    stranger.write(encodeHeader({ type: PacketType.Data, sessionId: 1, seq: 0, ack: 0, length: 0 }));
    await settle();
    expect(rig.linkDowns.map((down) => [down.error.code, down.error.message])).toEqual([
      ['ETCP_ERR_HANDSHAKE', 'expected HELLO, got Data'],
    ]);
    expect(stranger.destroyed).toBe(true);
  });
});
