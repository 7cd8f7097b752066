import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Session } from '../../../common/engine/session.js';
import { settle } from '../../helpers/duplex-pair.js';
import { openedSession, QUIET_TIMERS, Received, Rig, sha256, writeAll } from '../../helpers/endpoint-rig.js';

describe('endpoints: flow control', () => {
  const windowBytes = 256 * 1024;
  const maxFramePayloadBytes = 16 * 1024;
  const readableHighWaterBytes = 64 * 1024;
  const config = {
    ...QUIET_TIMERS,
    windowBytes,
    maxFramePayloadBytes,
    sessionReadableHighWaterBytes: readableHighWaterBytes,
    sessionWritableHighWaterBytes: 64 * 1024,
  };

  it('a session whose consumer does not read stalls only itself', async () => {
    const rig = Rig.memory({ client: config, server: config });
    await rig.nextUp();

    // Session A: the server side never reads (until the end of the test).
    const stalled = rig.open();
    const stalledData = randomBytes(1024 * 1024);
    const chunkBytes = 16 * 1024;
    let completedBytes = 0;
    for (let offset = 0; offset < stalledData.length; offset += chunkBytes) {
      const chunk = stalledData.subarray(offset, offset + chunkBytes);
      stalled.write(chunk, () => {
        completedBytes += chunk.length;
      });
    }
    const stalledAtServer = await rig.serverSession(0);
    await settle();

    // The writer's callbacks stop after about a window: what the reader buffered before its acks
    // stopped, plus a window of unacknowledged bytes.
    expect(completedBytes).toBeGreaterThanOrEqual(windowBytes);
    expect(completedBytes).toBeLessThanOrEqual(windowBytes + readableHighWaterBytes + 2 * maxFramePayloadBytes + chunkBytes);
    expect(completedBytes).toBeLessThan(stalledData.length);
    expect(stalled.unackedBytes).toBeGreaterThanOrEqual(windowBytes);
    expect(stalled.unackedBytes).toBeLessThanOrEqual(windowBytes + maxFramePayloadBytes);
    const stalledAt = completedBytes;

    // Session B on the same link flows both ways meanwhile.
    const { atClient, atServer } = await openedSession(rig);
    const up = randomBytes(2 * 1024 * 1024);
    const down = randomBytes(2 * 1024 * 1024);
    const upGot = new Received(atServer);
    const downGot = new Received(atClient);
    await Promise.all([writeAll(atClient, up), writeAll(atServer, down), upGot.ended, downGot.ended]);
    expect(upGot.digest()).toBe(sha256(up));
    expect(downGot.digest()).toBe(sha256(down));
    expect(completedBytes).toBe(stalledAt);

    // The consumer reads at last: A's remaining bytes arrive, in order, and every write completes.
    const stalledGot = new Received(stalledAtServer);
    await stalledGot.atLeast(stalledData.length);
    expect(stalledGot.digest()).toBe(sha256(stalledData));
    await settle();
    expect(completedBytes).toBe(stalledData.length);
    expect(rig.errorsOf(stalled)).toEqual([]);
  });

  it('a stalled consumer loses nothing across cuts: held acks resume where they stopped', async () => {
    const rig = Rig.memory({
      client: { ...config, reconnectBaseDelayMs: 1, reconnectMaxDelayMs: 1 },
      server: config,
    });
    await rig.nextUp();
    const session = rig.open();
    const data = randomBytes(1024 * 1024);
    session.end(data);
    const atServer = await rig.serverSession(0);
    await settle();
    // Cut while the reader's buffer is full and its acks are held back.
    for (let cut = 0; cut < 3; cut++) {
      await rig.clock.advance(1);
      const resumed = rig.nextUp();
      rig.cut();
      await resumed;
      await settle();
    }
    expect(session.unackedBytes).toBeGreaterThanOrEqual(windowBytes);

    // Then read, cutting again while the rest flows.
    const got = new Received(atServer);
    for (let cut = 1; cut <= 3; cut++) {
      await got.atLeast((cut * data.length) / 4);
      await rig.clock.advance(1);
      const resumed = rig.nextUp();
      rig.cut();
      await resumed;
    }
    await got.ended;
    expect(got.digest()).toBe(sha256(data));
    expect(rig.ups).toHaveLength(7);
  });

  it('a bulk session does not bury an interactive one behind its backlog', async () => {
    // A window as large as the transfer: without fair scheduling the whole of it could go first.
    const bulkConfig = { ...QUIET_TIMERS, windowBytes: 8 * 1024 * 1024, maxFramePayloadBytes: 16 * 1024 };
    const rig = Rig.memory({ client: bulkConfig, server: bulkConfig });
    await rig.nextUp();
    const bulk = await openedSession(rig);
    const interactive = await openedSession(rig);
    const bulkGot = new Received(bulk.atServer);
    const interactiveGot = new Received(interactive.atServer);

    const bulkData = randomBytes(8 * 1024 * 1024);
    bulk.atClient.end(bulkData);
    interactive.atClient.write('k');
    await interactiveGot.atLeast(1);
    const bulkBefore = bulkGot.bytes;
    await bulkGot.ended;

    // At most what the link had already taken (its high-water mark, 128 KiB by default, and a frame).
    expect(bulkBefore).toBeLessThanOrEqual(256 * 1024);
    expect(bulkGot.digest()).toBe(sha256(bulkData));
  });

  it('1,000 sessions and a stalled one stay within the send budget, and each goes on past it', async () => {
    const KiB = 1024;
    const sessions = 1000;
    const perSession = 64 * KiB;
    const budgetBytes = 1024 * KiB;
    const frameBytes = 4 * KiB;
    const budgeted = {
      ...QUIET_TIMERS,
      windowBytes: 64 * KiB,
      maxWindowBytes: 64 * KiB,
      maxFramePayloadBytes: frameBytes,
      sessionReadableHighWaterBytes: 8 * KiB,
      // SEND_BUDGET_BYTES=1099511627776 runs this without the budget, to see it fail (~56 MB queued).
      sendBudgetBytes: Number(process.env['SEND_BUDGET_BYTES'] ?? budgetBytes),
    };
    const rig = Rig.memory({ client: budgeted, server: budgeted });
    await rig.nextUp();
    // The bound send-budget.ts states: the budget, and per session its 16 KiB share and one frame.
    const bound = budgetBytes + sessions * (16 * KiB + frameBytes);
    let peak = 0;
    const sampler = setInterval(() => (peak = Math.max(peak, rig.client.queuedSendBytes)), 1);
    try {
      const data = Array.from({ length: sessions + 1 }, () => randomBytes(perSession));
      const atClient = data.map((bytes) => {
        const session = rig.open();
        session.end(bytes);
        return session;
      });
      // Nobody reads at the server yet: each session's acks stop once its reader holds 8 KiB, and
      // the rest waits in the client's send queues, for all of which the budget has room.
      const atServer = await Promise.all(data.map((_bytes, index) => rig.serverSession(index)));
      await settle();
      peak = Math.max(peak, rig.client.queuedSendBytes);
      expect(rig.client.queuedSendBytes).toBeGreaterThan(budgetBytes);
      expect(peak).toBeLessThanOrEqual(bound);
      // Every reader but the last reads now: every stream arrives whole, the stalled one stays held.
      const received = atServer.slice(0, sessions).map((session) => new Received(session));
      await Promise.all(received.map((got) => got.ended));
      received.forEach((got, index) => expect(got.digest()).toBe(sha256(data[index] as Buffer)));
      expect(peak).toBeLessThanOrEqual(bound);
      const stalled = atClient[sessions] as Session;
      expect(stalled.unackedBytes).toBeGreaterThan(0);
      // Once alone, it has all the budget it wants: its reader takes the rest, all of it.
      const last = new Received(atServer[sessions] as Session);
      await last.ended;
      expect(last.digest()).toBe(sha256(data[sessions] as Buffer));
      await settle();
      expect(rig.client.queuedSendBytes).toBe(0);
    } finally {
      clearInterval(sampler);
    }
  }, 60_000);
});

