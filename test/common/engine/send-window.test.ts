import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../../../common/support/errors.js';
import { PacketType, UINT32_MAX } from '../../../common/protocol/constants.js';
import { SendBudget } from '../../../common/engine/send-budget.js';
import { SendWindow } from '../../../common/engine/send-window.js';
import { expectEternalError } from '../../helpers/expect-error.js';

const FRAME = 100;

function windowOf(windowBytes = 400, firstSeq = 1000): SendWindow {
  // A budget that never binds, and a window that never grows: what these tests are about is the window itself.
  return new SendWindow({
    firstSeq,
    windowBytes,
    maxWindowBytes: windowBytes,
    maxFramePayloadBytes: FRAME,
    budget: new SendBudget(2 ** 40),
    onBudgetRoom: () => {},
  });
}

/** Every packet the window has not written yet, as [type, seq, payload length]. */
function drain(window: SendWindow): Array<[PacketType, number, number]> {
  const taken: Array<[PacketType, number, number]> = [];
  for (let packet = window.takeNext(); packet !== null; packet = window.takeNext()) {
    taken.push([packet.type, packet.seq, packet.payload.length]);
  }
  return taken;
}

describe('SendWindow: numbering and the window', () => {
  it('numbers packets from the first seq, across the 32-bit wrap', () => {
    const window = windowOf(400, UINT32_MAX);
    window.append(PacketType.Open, Buffer.alloc(0));
    window.appendData(Buffer.alloc(10));
    expect(window.nextSeq).toBe(1);
    expect(drain(window)).toEqual([
      [PacketType.Open, UINT32_MAX, 0],
      [PacketType.Data, 0, 10],
    ]);
  });

  it('a frame fits while the unacknowledged bytes are under the window and the chunk is one frame', () => {
    const window = windowOf(250);
    expect(window.fitsOneFrame(FRAME)).toBe(true);
    expect(window.fitsOneFrame(FRAME + 1)).toBe(false);
    window.appendData(Buffer.alloc(FRAME));
    window.appendData(Buffer.alloc(FRAME));
    expect(window.fitsOneFrame(1)).toBe(true); // 200 < 250: one more frame may cross the window
    window.appendData(Buffer.alloc(FRAME));
    expect(window.unackedBytes).toBe(300);
    expect(window.fitsOneFrame(1)).toBe(false);
  });

  it('asks for an ack once per quarter window of payload', () => {
    const window = windowOf(400); // a quarter: 100 bytes
    for (let i = 0; i < 5; i++) window.appendData(Buffer.alloc(50));
    expect(drain(window).map(([type]) => type)).toEqual([
      PacketType.Data,
      PacketType.DataAckRequest,
      PacketType.Data,
      PacketType.DataAckRequest,
      PacketType.Data,
    ]);
  });

  it('an ack trims what it covers, a stale one is ignored, and none may pass what was sent', () => {
    const window = windowOf();
    for (let i = 0; i < 3; i++) window.appendData(Buffer.alloc(10));
    expect(window.acknowledge(1000, 7)).toBe(false); // the same ack: nothing moved
    expect(window.acknowledge(1002, 7)).toBe(true);
    expect(window.peerAck).toBe(1002);
    expect(window.unackedPackets).toBe(1);
    expect(window.unackedBytes).toBe(10);
    // Behind the current ack: one that travelled on the other lane and arrived late.
    expect(window.acknowledge(1001, 7)).toBe(false);
    expect(window.peerAck).toBe(1002);
    expect(window.unackedPackets).toBe(1);
    expectEternalError(() => window.acknowledge(1004, 7), ProtocolError, 'ETCP_ERR_PROTOCOL', 'session 7: ack 1004 outside the unacknowledged range [1002, 1003]');
  });

  it('rewinds to the oldest unacknowledged packet for a new link', () => {
    const window = windowOf();
    for (let i = 0; i < 3; i++) window.appendData(Buffer.alloc(10));
    drain(window);
    expect(window.inFlightBytes).toBe(30);
    window.acknowledge(1001, 1);
    expect(window.rewind()).toBe(2);
    expect(window.hasUnsent).toBe(true);
    expect(drain(window).map(([, seq]) => seq)).toEqual([1001, 1002]);
  });
});

describe('SendWindow: the write that waits for room', () => {
  it('queues a large write in frames up to the window, then the rest as acks free room', () => {
    const window = windowOf(200);
    const calls: Array<Error | null | undefined> = [];
    window.startWrite(Buffer.alloc(450, 7), (error) => calls.push(error));
    expect(window.pump()).toBe(true);
    window.completeWriteIfQueued();
    expect(window.unackedBytes).toBe(200);
    expect(window.hasWaitingWrite).toBe(true);
    expect(calls).toEqual([]);

    expect(drain(window).map(([, , bytes]) => bytes)).toEqual([100, 100]);
    window.acknowledge(1002, 1);
    expect(window.pump()).toBe(true);
    window.completeWriteIfQueued();
    expect(calls).toEqual([]);
    expect(drain(window).map(([, , bytes]) => bytes)).toEqual([100, 100]);
    window.acknowledge(1004, 1);
    expect(window.pump()).toBe(true);
    window.completeWriteIfQueued();
    expect(window.hasWaitingWrite).toBe(false);
    expect(calls).toEqual([undefined]);
    expect(drain(window).map(([, , bytes]) => bytes)).toEqual([50]);
  });

  it('a full window queues nothing and completes nothing', () => {
    const window = windowOf(100);
    window.appendData(Buffer.alloc(100));
    let done = false;
    window.startWrite(Buffer.alloc(10), () => (done = true));
    expect(window.pump()).toBe(false);
    window.completeWriteIfQueued();
    expect(done).toBe(false);
  });

  it('bytes added to a waiting write follow what it has not queued yet, in order', () => {
    const window = windowOf(100);
    window.startWrite(Buffer.from('a'.repeat(150)), () => {});
    window.pump();
    window.extendWaitingWrite(Buffer.from('bc'));
    drain(window);
    window.acknowledge(1001, 1);
    window.pump();
    const rest = window.takeNext();
    expect(rest?.payload.toString()).toBe(`${'a'.repeat(50)}bc`);
  });

  it('runs what follows the waiting write after its own callback, and an abandoned write gets the error', () => {
    const window = windowOf(100);
    window.appendData(Buffer.alloc(100));
    const order: string[] = [];
    window.startWrite(Buffer.alloc(10), (error) => order.push(`own ${error?.message ?? 'ok'}`));
    window.afterWaitingWrite((error) => order.push(`next ${error?.message ?? 'ok'}`));
    window.abandonWaitingWrite(new Error('gone'));
    expect(order).toEqual(['own gone', 'next gone']);
    expect(window.hasWaitingWrite).toBe(false);
  });
});

describe('SendWindow: the window grows to the path, and the proxy-wide budget bounds every queue', () => {
  const KiB = 1024;
  const bigFrames = (budget: SendBudget, windowBytes: number, maxWindowBytes: number, onBudgetRoom = (): void => {}): SendWindow =>
    new SendWindow({ firstSeq: 1, windowBytes, maxWindowBytes, maxFramePayloadBytes: 64 * KiB, budget, onBudgetRoom });

  it('a window that held a session back for a round trip grows to twice what it delivered, and queues that much', () => {
    const window = bigFrames(new SendBudget(2 ** 40), 256 * KiB, 1024 * KiB);
    window.startWrite(Buffer.alloc(4096 * KiB), () => {});
    window.pump();
    expect(window.unackedBytes).toBe(256 * KiB);
    drain(window);
    window.acknowledge(window.nextSeq, 1, { now: 0, minRttMs: 200 }); // the sample starts
    window.pump(); // full again: the window holds the session back
    drain(window);
    window.acknowledge(window.nextSeq, 1, { now: 200, minRttMs: 200 }); // 256 KiB in one 200 ms round trip
    expect(window.windowBytes).toBe(512 * KiB);
    window.pump();
    expect(window.unackedBytes).toBe(512 * KiB);
  });

  it('sessions past the budget keep their guaranteed share; acks that free the budget wake the one that stopped on it', async () => {
    const budget = new SendBudget(256 * KiB);
    const first = bigFrames(budget, 1024 * KiB, 1024 * KiB);
    let woken = 0;
    const second = bigFrames(budget, 1024 * KiB, 1024 * KiB, () => woken++);
    first.startWrite(Buffer.alloc(1024 * KiB), () => {});
    first.pump();
    expect(first.unackedBytes).toBe(256 * KiB); // the budget, not the window, stopped it
    second.startWrite(Buffer.alloc(1024 * KiB), () => {});
    second.pump();
    // GUARANTEED_QUEUE_BYTES (16 KiB), though the budget is spent, and the frame that crosses it.
    expect(second.unackedBytes).toBe(64 * KiB);
    expect(budget.usedBytes).toBe(320 * KiB);
    drain(first);
    first.acknowledge(first.nextSeq, 1);
    expect(budget.usedBytes).toBe(64 * KiB);
    await Promise.resolve();
    expect(woken).toBe(1);
    second.pump();
    expect(second.unackedBytes).toBe(256 * KiB); // all of the budget, now that it is the only one holding any
    second.clear();
    expect(budget.usedBytes).toBe(0);
  });
});
