import { once } from 'node:events';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ProtocolError, SessionLostError, SessionResetError } from '../../../common/support/errors.js';
import { PacketType, UINT32_MAX } from '../../../common/protocol/constants.js';
import { decodeReason, encodeReason } from '../../../common/protocol/messages.js';
import { seqAdd } from '../../../common/protocol/seq.js';
import { catchError } from '../../helpers/expect-error.js';
import type { QueuedPacket } from '../../../common/engine/retransmit-queue.js';
import { SendBudget } from '../../../common/engine/send-budget.js';
import {
  Session,
  type AckTiming,
  type FinishReason,
  type ReceiveVerdict,
  type SessionOptions,
  type SessionOwner,
  type SessionSink,
} from '../../../common/engine/session.js';

/** Stands in for the multiplexer: records every call a session makes on its owner. */
class RecordingOwner implements SessionOwner {
  outputCalls = 0;
  ackCalls = 0;
  readonly ackTimings: AckTiming[] = [];
  readonly finished: { reason: FinishReason; detail: string }[] = [];

  sessionHasOutput(): void {
    this.outputCalls++;
  }

  sessionNeedsAck(_session: Session, timing: AckTiming): void {
    this.ackCalls++;
    this.ackTimings.push(timing);
  }

  sessionFinished(_session: Session, reason: FinishReason, detail: string): void {
    this.finished.push({ reason, detail });
  }
}

type TestOptions = Partial<Omit<SessionOptions, 'owner'>>;

const SEND_SEQ = 100;
const RECEIVE_SEQ = 500;

function makeSession(options: TestOptions = {}): { session: Session; owner: RecordingOwner } {
  const owner = new RecordingOwner();
  const session = new Session({
    id: 7,
    owner,
    sendSeq: SEND_SEQ,
    receiveSeq: RECEIVE_SEQ,
    windowBytes: 4096,
    maxWindowBytes: options.windowBytes ?? 4096,
    budget: new SendBudget(2 ** 40),
    maxFramePayloadBytes: 256,
    readableHighWaterMark: 64 * 1024,
    writableHighWaterMark: 16 * 1024,
    copyWrites: true,
    ...options,
  });
  return { session, owner };
}

function takeAll(session: Session): QueuedPacket[] {
  const packets: QueuedPacket[] = [];
  for (let packet = session.takeNextPacket(); packet !== null; packet = session.takeNextPacket()) packets.push(packet);
  return packets;
}

/**
 * Takes the session's packets until its FIN, acknowledging one packet whenever a turn brings
 * nothing new (the window is full); `beforeEachAck` checks the state while it waits.
 */
async function takeUntilFin(session: Session, beforeEachAck: () => void = () => {}): Promise<QueuedPacket[]> {
  const packets: QueuedPacket[] = [];
  let acked = SEND_SEQ;
  while (!packets.some((packet) => packet.type === PacketType.Fin)) {
    await turn();
    const batch = takeAll(session);
    packets.push(...batch);
    if (batch.length === 0) {
      beforeEachAck();
      acked = seqAdd(acked, 1);
      session.acknowledge(acked);
    }
  }
  return packets;
}

/** Everything the readable side delivers until 'end', read through 'data' events. */
function readAll(session: Session): Promise<Buffer> {
  const chunks: Buffer[] = [];
  session.on('data', (chunk: Buffer) => chunks.push(chunk));
  return once(session, 'end').then(() => Buffer.concat(chunks));
}

interface TrackedWrite {
  readonly done: Promise<void>;
  readonly fired: () => boolean;
}

function trackedWrite(session: Session, chunk: Buffer | string): TrackedWrite {
  let fired = false;
  const done = new Promise<void>((resolve, reject) => {
    session.write(chunk, (error) => {
      fired = true;
      if (error) reject(error);
      else resolve();
    });
  });
  return { done, fired: () => fired };
}

/** Resolves on 'close' whatever errors came before it (events.once would reject on 'error'). */
function closed(session: Session): Promise<void> {
  return new Promise((resolve) => session.once('close', () => resolve()));
}

/** One turn of the event loop: lets nextTick/microtask callbacks (such as write callbacks) run. */
function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function payloadFor(index: number): Buffer {
  return Buffer.from(`<${index}>`, 'utf8');
}

describe('Session: receiving (exactly once, in order)', () => {
  it('delivers each byte once and in order through duplicates, replays and gaps, across the 2^32 wrap', async () => {
    const base = 0xfffffff0;
    const { session, owner } = makeSession({ receiveSeq: base });
    const received = readAll(session);
    const count = 40; // seqs 0xfffffff0 .. 0x17
    const verdicts: [number, ReceiveVerdict][] = [];
    const deliver = (index: number): void => {
      verdicts.push([index, session.receive(PacketType.Data, seqAdd(base, index), payloadFor(index))]);
    };
    deliver(0);
    deliver(1);
    deliver(2);
    deliver(1); // duplicate
    deliver(0); // replay of an older packet
    deliver(5); // ahead of the expected seq
    deliver(30); // far ahead, past the wrap
    deliver(3);
    for (let i = 4; i < count; i++) {
      deliver(i);
      deliver(i); // every packet twice
      deliver(i - 3); // and an old one replayed
      if (i + 2 < count) deliver(i + 2); // and one from the future
    }
    expect(verdicts.slice(0, 8)).toEqual([
      [0, 'accepted'],
      [1, 'accepted'],
      [2, 'accepted'],
      [1, 'duplicate'],
      [0, 'duplicate'],
      [5, 'ahead'],
      [30, 'ahead'],
      [3, 'accepted'],
    ]);
    const accepted = verdicts.filter(([, verdict]) => verdict === 'accepted').map(([index]) => index);
    expect(accepted).toEqual(Array.from({ length: count }, (_, i) => i));
    // Only accepted packets ask for an ack.
    expect(owner.ackCalls).toBe(count);
    expect(session.ackable).toBe(seqAdd(base, count));
    expect(session.ackable).toBe(0x18);

    expect(session.receive(PacketType.Fin, seqAdd(base, count), Buffer.alloc(0))).toBe('accepted');
    expect(session.receive(PacketType.Fin, seqAdd(base, count), Buffer.alloc(0))).toBe('duplicate');
    const expected = Buffer.concat(Array.from({ length: count }, (_, i) => payloadFor(i)));
    expect((await received).toString()).toBe(expected.toString());
  });

  it('delivers exactly once for any schedule of retransmissions (property, near the wrap)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: UINT32_MAX - 40, max: UINT32_MAX }),
        fc.array(fc.integer({ min: 0, max: 12 }), { minLength: 1, maxLength: 25 }),
        fc.array(fc.integer({ min: -6, max: 6 }), { maxLength: 60 }),
        async (base, sizes, offsets) => {
          const { session } = makeSession({ receiveSeq: base, readableHighWaterMark: 8 });
          const received = readAll(session);
          const payloads = sizes.map((size, i) => Buffer.alloc(size, i + 1));
          let next = 0;
          // A go-back-N sender: each delivery is near the receiver's position, before or after it.
          for (const offset of offsets) {
            const index = Math.max(0, Math.min(payloads.length - 1, next + offset));
            const verdict = session.receive(PacketType.Data, seqAdd(base, index), payloads[index] ?? Buffer.alloc(0));
            const expected: ReceiveVerdict = index < next ? 'duplicate' : index === next ? 'accepted' : 'ahead';
            expect(verdict).toBe(expected);
            if (verdict === 'accepted') next++;
          }
          // Then the sender retransmits everything from the start, in order.
          for (let index = 0; index < payloads.length; index++) {
            const verdict = session.receive(PacketType.Data, seqAdd(base, index), payloads[index] ?? Buffer.alloc(0));
            expect(verdict).toBe(index < next ? 'duplicate' : 'accepted');
          }
          expect(session.receive(PacketType.Fin, seqAdd(base, payloads.length), Buffer.alloc(0))).toBe('accepted');
          expect((await received).equals(Buffer.concat(payloads))).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('reads the same bytes through async iteration', async () => {
    const { session } = makeSession({ receiveSeq: UINT32_MAX });
    expect(session.receive(PacketType.Data, UINT32_MAX, Buffer.from('ab'))).toBe('accepted');
    expect(session.receive(PacketType.Data, UINT32_MAX, Buffer.from('ab'))).toBe('duplicate');
    expect(session.receive(PacketType.Data, 1, Buffer.from('ef'))).toBe('ahead');
    expect(session.receive(PacketType.Data, 0, Buffer.from('cd'))).toBe('accepted');
    expect(session.receive(PacketType.Data, 1, Buffer.from('ef'))).toBe('accepted');
    expect(session.receive(PacketType.Fin, 2, Buffer.alloc(0))).toBe('accepted');
    const chunks: Buffer[] = [];
    for await (const chunk of session) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe('abcdef');
  });

  it('accepts a zero-length DATA packet: it takes a seq but delivers nothing', async () => {
    const { session } = makeSession();
    const received = readAll(session);
    expect(session.receive(PacketType.Data, RECEIVE_SEQ, Buffer.alloc(0))).toBe('accepted');
    expect(session.receive(PacketType.Data, RECEIVE_SEQ + 1, Buffer.from('x'))).toBe('accepted');
    expect(session.receive(PacketType.Fin, RECEIVE_SEQ + 2, Buffer.alloc(0))).toBe('accepted');
    expect((await received).toString()).toBe('x');
    expect(session.ackable).toBe(RECEIVE_SEQ + 3);
  });

  it('rejects a sequenced type it cannot take (OPEN on an open session) with ProtocolError', () => {
    const { session } = makeSession();
    const error = catchError(() => session.receive(PacketType.Open, RECEIVE_SEQ, Buffer.alloc(0)));
    expect(error).toBeInstanceOf(ProtocolError);
    expect((error as ProtocolError).code).toBe('ETCP_ERR_PROTOCOL');
    expect((error as ProtocolError).message).toBe(`session 7: unexpected sequenced packet type ${PacketType.Open}`);
  });
});

describe('Session: sending', () => {
  it('turns writes into DATA packets of at most maxFramePayloadBytes, with consecutive seqs across the wrap', async () => {
    const { session, owner } = makeSession({ sendSeq: UINT32_MAX - 1, maxFramePayloadBytes: 256 });
    const data = Buffer.from(Array.from({ length: 1000 }, (_, i) => i & 0xff));
    await trackedWrite(session, data).done;
    const packets = takeAll(session);
    expect(packets.map((packet) => packet.type)).toEqual([PacketType.Data, PacketType.Data, PacketType.Data, PacketType.Data]);
    expect(packets.map((packet) => packet.seq)).toEqual([UINT32_MAX - 1, UINT32_MAX, 0, 1]);
    expect(packets.map((packet) => packet.payload.length)).toEqual([256, 256, 256, 232]);
    expect(Buffer.concat(packets.map((packet) => packet.payload)).equals(data)).toBe(true);
    expect(session.unackedBytes).toBe(1000);
    expect(session.unackedPackets).toBe(4);
    expect(owner.outputCalls).toBeGreaterThan(0);
    // Taking a packet writes it; it stays queued until the peer acknowledges it.
    expect(session.hasUnsent).toBe(false);
    session.acknowledge(1);
    expect(session.unackedPackets).toBe(1);
    session.acknowledge(2);
    expect(session.unackedBytes).toBe(0);
  });

  it('queues OPEN first, with the first send seq and no payload', () => {
    const { session, owner } = makeSession();
    session.queueOpen();
    expect(owner.outputCalls).toBe(1);
    const [open] = takeAll(session);
    expect(open?.type).toBe(PacketType.Open);
    expect(open?.seq).toBe(SEND_SEQ);
    expect(open?.payload.length).toBe(0);
  });

  it('holds the write callback while the window is full and releases it as acks free room', async () => {
    const { session } = makeSession({ windowBytes: 512, maxFramePayloadBytes: 256 });
    const data = Buffer.alloc(2048, 0x33);
    const write = trackedWrite(session, data);
    const later = trackedWrite(session, 'after');
    await turn();
    expect(write.fired()).toBe(false);
    expect(later.fired()).toBe(false);
    expect(session.unackedBytes).toBe(512);
    const sent = takeAll(session);
    expect(sent).toHaveLength(2);

    let acked = SEND_SEQ;
    while (sent.length < 8) {
      acked = seqAdd(acked, 1);
      session.acknowledge(acked);
      expect(session.unackedBytes).toBeLessThanOrEqual(512);
      sent.push(...takeAll(session));
      if (sent.length < 8) {
        await turn();
        expect(write.fired()).toBe(false);
      }
    }
    await write.done;
    expect(Buffer.concat(sent.map((packet) => packet.payload)).equals(data)).toBe(true);
    // The next write is queued only once there is room again.
    await turn();
    expect(later.fired()).toBe(false);
    session.acknowledge(seqAdd(acked, 1));
    await later.done;
    const [next] = takeAll(session);
    expect(next?.payload.toString()).toBe('after');
    expect(next?.seq).toBe(SEND_SEQ + 8);
  });

  it('never holds more than windowBytes plus one frame unacknowledged', async () => {
    const { session } = makeSession({ windowBytes: 300, maxFramePayloadBytes: 256 });
    const write = trackedWrite(session, Buffer.alloc(5000));
    let acked = SEND_SEQ;
    while (!write.fired()) {
      expect(session.unackedBytes).toBeLessThan(300 + 256);
      takeAll(session);
      acked = seqAdd(acked, 1);
      session.acknowledge(acked);
      await turn();
    }
    await write.done;
  });

  it('ignores a repeated or stale ack and rejects an ack beyond what was sent with ProtocolError', async () => {
    const { session } = makeSession();
    await trackedWrite(session, Buffer.alloc(300)).done; // seqs 100, 101; next 102
    session.acknowledge(SEND_SEQ); // the current ack again: nothing happens
    expect(session.unackedPackets).toBe(2);

    const beyond = catchError(() => session.acknowledge(103));
    expect(beyond).toBeInstanceOf(ProtocolError);
    expect((beyond as ProtocolError).code).toBe('ETCP_ERR_PROTOCOL');
    expect((beyond as ProtocolError).message).toBe('session 7: ack 103 outside the unacknowledged range [100, 102]');
    expect(session.unackedPackets).toBe(2);

    session.acknowledge(102);
    expect(session.unackedPackets).toBe(0);
    // A stale ack (it came on the other lane, behind a newer one) changes nothing.
    session.acknowledge(101);
    expect(session.unackedPackets).toBe(0);
    const beyondAfter = catchError(() => session.acknowledge(103));
    expect((beyondAfter as ProtocolError).message).toBe('session 7: ack 103 outside the unacknowledged range [102, 102]');
  });

  it('rejects an ack past the sent range across the wrap', async () => {
    const { session } = makeSession({ sendSeq: UINT32_MAX });
    await trackedWrite(session, 'x').done; // seq 0xffffffff; next 0
    expect(() => session.acknowledge(1)).toThrow(ProtocolError);
    session.acknowledge(0);
    expect(session.unackedPackets).toBe(0);
  });

  it('rejects any ack when nothing was sent', () => {
    const { session } = makeSession();
    expect(() => session.acknowledge(SEND_SEQ + 1)).toThrow(ProtocolError);
  });

  it('end() queues a FIN after all data', async () => {
    const { session } = makeSession({ maxFramePayloadBytes: 256 });
    session.write(Buffer.alloc(600, 0x41));
    session.end();
    await once(session, 'finish');
    const packets = takeAll(session);
    expect(packets.map((packet) => packet.type)).toEqual([PacketType.Data, PacketType.Data, PacketType.Data, PacketType.Fin]);
    expect(packets.map((packet) => packet.seq)).toEqual([100, 101, 102, 103]);
    expect(packets[3]?.payload.length).toBe(0);
    expect(session.state).toBe('fin-sent');
  });

  it('end() waits for data held back by the window: the FIN never overtakes it', async () => {
    const { session } = makeSession({ windowBytes: 256, maxFramePayloadBytes: 256 });
    session.write(Buffer.alloc(600));
    session.end();
    let finished = false;
    session.on('finish', () => {
      finished = true;
    });
    const packets = await takeUntilFin(session, () => expect(finished).toBe(false));
    // Each frame fills the whole window, so each asks for its ack at once.
    expect(packets.map((packet) => packet.type)).toEqual([
      PacketType.DataAckRequest,
      PacketType.DataAckRequest,
      PacketType.DataAckRequest,
      PacketType.Fin,
    ]);
    expect(packets.map((packet) => packet.seq)).toEqual([100, 101, 102, 103]);
  });
});

describe('Session: close and reset', () => {
  it('ends the readable side on FIN and still sends (half-close)', async () => {
    const { session, owner } = makeSession();
    const received = readAll(session);
    session.receive(PacketType.Data, RECEIVE_SEQ, Buffer.from('bye'));
    expect(session.receive(PacketType.Fin, RECEIVE_SEQ + 1, Buffer.alloc(0))).toBe('accepted');
    expect((await received).toString()).toBe('bye');
    expect(session.state).toBe('fin-received');
    expect(session.ackable).toBe(RECEIVE_SEQ + 2);
    expect(owner.ackCalls).toBe(2);

    await trackedWrite(session, 'still here').done;
    const [data] = takeAll(session);
    expect(data?.type).toBe(PacketType.Data);
    expect(data?.payload.toString()).toBe('still here');

    session.end();
    await once(session, 'finish');
    expect(session.state).toBe('fin-both');
    const [fin] = takeAll(session);
    expect(fin?.type).toBe(PacketType.Fin);
    expect(owner.finished).toEqual([]);
    session.acknowledge(seqAdd(fin?.seq ?? 0, 1));
    expect(session.state).toBe('finished');
    expect(owner.finished).toEqual([{ reason: 'closed', detail: 'both sides closed' }]);
  });

  it('finishes when the peer FIN arrives after ours was acknowledged', async () => {
    const { session, owner } = makeSession();
    session.end();
    await once(session, 'finish');
    session.acknowledge(SEND_SEQ + 1);
    expect(session.state).toBe('fin-sent');
    session.resume(); // consume, so that 'end' can be emitted
    session.receive(PacketType.Fin, RECEIVE_SEQ, Buffer.alloc(0));
    expect(session.state).toBe('finished');
    expect(owner.finished).toEqual([{ reason: 'closed', detail: 'both sides closed' }]);
    // Once finished, a retransmission of anything is a duplicate.
    expect(session.receive(PacketType.Data, RECEIVE_SEQ + 1, Buffer.from('late'))).toBe('duplicate');
  });

  it('rejects DATA after FIN and a second FIN with ProtocolError', () => {
    const { session } = makeSession();
    session.resume();
    session.receive(PacketType.Fin, RECEIVE_SEQ, Buffer.alloc(0));
    const data = catchError(() => session.receive(PacketType.Data, RECEIVE_SEQ + 1, Buffer.from('x')));
    expect(data).toBeInstanceOf(ProtocolError);
    expect((data as ProtocolError).message).toBe('session 7: DATA after FIN');
    const fin = catchError(() => session.receive(PacketType.Fin, RECEIVE_SEQ + 1, Buffer.alloc(0)));
    expect(fin).toBeInstanceOf(ProtocolError);
    expect((fin as ProtocolError).message).toBe('session 7: second FIN');
  });

  it('is destroyed with SessionResetError on RESET, failing a pending write', async () => {
    const { session, owner } = makeSession({ windowBytes: 256, maxFramePayloadBytes: 256 });
    const write = trackedWrite(session, Buffer.alloc(1000));
    const writeFailed = write.done.then(
      () => null,
      (error: unknown) => error,
    );
    const errored = once(session, 'error');
    expect(session.receive(PacketType.Reset, RECEIVE_SEQ, encodeReason('target refused'))).toBe('accepted');
    const [error] = (await errored) as [unknown];
    expect(error).toBeInstanceOf(SessionResetError);
    expect((error as SessionResetError).code).toBe('ETCP_ERR_SESSION_RESET');
    expect((error as SessionResetError).message).toBe('session reset by peer: target refused');
    expect((error as SessionResetError).reason).toBe('target refused');
    expect(session.destroyed).toBe(true);
    expect(session.state).toBe('finished');
    expect(session.ackable).toBe(RECEIVE_SEQ + 1);
    expect(owner.finished).toEqual([{ reason: 'reset-by-peer', detail: 'target refused' }]);
    // No RESET goes back, and nothing is retransmitted any more.
    expect(session.unackedPackets).toBe(0);
    expect(takeAll(session)).toEqual([]);
    expect(await writeFailed).toBeInstanceOf(SessionResetError);
  });

  it('queues a RESET with the reason when the application destroys it, and finishes when it is acknowledged', async () => {
    const { session, owner } = makeSession();
    await trackedWrite(session, 'abc').done;
    const errored = once(session, 'error');
    session.destroy(new Error('app crashed'));
    const [error] = (await errored) as [Error];
    expect(error.message).toBe('app crashed');
    expect(session.state).toBe('reset-sent');
    const packets = takeAll(session);
    expect(packets.map((packet) => packet.type)).toEqual([PacketType.Data, PacketType.Reset]);
    expect(decodeReason(packets[1]?.payload ?? Buffer.alloc(0))).toBe('app crashed');
    expect(session.resolveUnknownToPeer(true)).toBe('completed');
    session.acknowledge(SEND_SEQ + 1);
    expect(owner.finished).toEqual([]);
    session.acknowledge(SEND_SEQ + 2);
    expect(session.state).toBe('finished');
    expect(owner.finished).toEqual([{ reason: 'reset-sent', detail: 'reset acknowledged' }]);
  });

  it('uses "closed by application" as the RESET reason of a destroy() without error', async () => {
    const { session } = makeSession();
    session.destroy();
    await once(session, 'close');
    const [reset] = takeAll(session);
    expect(reset?.type).toBe(PacketType.Reset);
    expect(decodeReason(reset?.payload ?? Buffer.alloc(0))).toBe('closed by application');
  });

  it('lose() destroys with SessionLostError and sends nothing', async () => {
    const { session, owner } = makeSession();
    const errored = once(session, 'error');
    session.lose('sproxy forgot us');
    const [error] = (await errored) as [unknown];
    expect(error).toBeInstanceOf(SessionLostError);
    expect((error as SessionLostError).code).toBe('ETCP_ERR_SESSION_LOST');
    expect((error as SessionLostError).message).toBe('sproxy forgot us');
    expect(owner.finished).toEqual([{ reason: 'lost', detail: 'sproxy forgot us' }]);
    expect(takeAll(session)).toEqual([]);
    session.lose('again');
    expect(owner.finished).toHaveLength(1);
  });

  it('settleCompletedAtPeer() finishes a session that both sides closed', async () => {
    const { session, owner } = makeSession();
    session.resume();
    session.receive(PacketType.Fin, RECEIVE_SEQ, Buffer.alloc(0));
    session.end();
    await once(session, 'finish');
    expect(session.state).toBe('fin-both');
    session.settleCompletedAtPeer();
    expect(session.state).toBe('finished');
    expect(owner.finished).toEqual([{ reason: 'closed', detail: 'completed at the peer' }]);
    session.settleCompletedAtPeer();
    expect(owner.finished).toHaveLength(1);
  });
});

describe('Session: when acks are asked for', () => {
  it('sends DATA_ACK_REQUEST once per quarter of the window, DATA otherwise', async () => {
    // 4096-byte window, 256-byte frames: a quarter is 1024 bytes, i.e. every 4th frame.
    const { session } = makeSession();
    await trackedWrite(session, Buffer.alloc(12 * 256)).done;
    const types = takeAll(session).map((packet) => packet.type);
    const quarter = [PacketType.Data, PacketType.Data, PacketType.Data, PacketType.DataAckRequest];
    expect(types).toEqual([...quarter, ...quarter, ...quarter]);
  });

  it('counts bytes, not frames, across writes of any size', async () => {
    const { session } = makeSession();
    for (let i = 0; i < 10; i++) await trackedWrite(session, Buffer.alloc(100)).done; // 1000 bytes
    expect(takeAll(session).every((packet) => packet.type === PacketType.Data)).toBe(true);
    await trackedWrite(session, Buffer.alloc(24)).done; // 1024: a quarter
    expect(takeAll(session).map((packet) => packet.type)).toEqual([PacketType.DataAckRequest]);
  });

  it('lets the ack of plain DATA wait, but wants it now for DATA_ACK_REQUEST, FIN and a catch-up', async () => {
    const { session, owner } = makeSession({ readableHighWaterMark: 4 });
    session.receive(PacketType.Data, RECEIVE_SEQ, Buffer.from('ab'));
    session.receive(PacketType.DataAckRequest, RECEIVE_SEQ + 1, Buffer.from('cdef')); // the buffer reaches its mark
    session.receive(PacketType.Fin, RECEIVE_SEQ + 2, Buffer.alloc(0));
    expect(owner.ackTimings).toEqual(['delayed', 'now', 'now']);
    expect(session.ackable).toBe(RECEIVE_SEQ + 1); // held back at the mark: the consumer is behind
    session.resume();
    await once(session, 'end');
    expect(session.ackable).toBe(RECEIVE_SEQ + 3);
    expect(owner.ackTimings).toEqual(['delayed', 'now', 'now', 'now']);
  });

  it('delivers a payload received in slices in order, as one packet', async () => {
    const { session } = makeSession();
    const received = readAll(session);
    expect(session.receive(PacketType.Data, RECEIVE_SEQ, [Buffer.from('sl'), Buffer.from('ic'), Buffer.from('ed')])).toBe('accepted');
    expect(session.ackable).toBe(RECEIVE_SEQ + 1);
    session.receive(PacketType.Fin, RECEIVE_SEQ + 1, []);
    expect((await received).toString()).toBe('sliced');
  });

  it('reads a RESET reason that arrived in slices', async () => {
    const { session } = makeSession();
    const reason = encodeReason('target went away');
    const failed = once(session, 'error').then(([error]) => error as Error);
    session.receive(PacketType.Reset, RECEIVE_SEQ, [reason.subarray(0, 5), reason.subarray(5)]);
    const error = await failed;
    expect(error).toBeInstanceOf(SessionResetError);
    expect(error.message).toContain('target went away');
  });

  it('delivers DATA_ACK_REQUEST bytes like DATA, exactly once', async () => {
    const { session } = makeSession();
    const received = readAll(session);
    expect(session.receive(PacketType.DataAckRequest, RECEIVE_SEQ, Buffer.from('one '))).toBe('accepted');
    expect(session.receive(PacketType.DataAckRequest, RECEIVE_SEQ, Buffer.from('one '))).toBe('duplicate');
    expect(session.receive(PacketType.Data, RECEIVE_SEQ + 1, Buffer.from('two'))).toBe('accepted');
    session.receive(PacketType.Fin, RECEIVE_SEQ + 2, Buffer.alloc(0));
    expect((await received).toString()).toBe('one two');
  });
});

describe('Session: acks and consumer backpressure', () => {
  it('advances the ack with every accepted packet while the consumer keeps up', () => {
    const { session, owner } = makeSession();
    expect(session.ackPending).toBe(false);
    session.receive(PacketType.Data, RECEIVE_SEQ, Buffer.from('a'));
    expect(session.ackable).toBe(RECEIVE_SEQ + 1);
    expect(session.ackPending).toBe(true);
    expect(owner.ackCalls).toBe(1);
    expect(session.takeAck()).toBe(RECEIVE_SEQ + 1);
    expect(session.ackPending).toBe(false);
    session.receive(PacketType.Data, RECEIVE_SEQ, Buffer.from('a')); // duplicate: no new ack
    expect(session.ackPending).toBe(false);
    expect(owner.ackCalls).toBe(1);
  });

  it('holds the ack while the readable buffer is over its high water mark, until the data is read', () => {
    const { session, owner } = makeSession({ readableHighWaterMark: 16 });
    for (let i = 0; i < 3; i++) {
      expect(session.receive(PacketType.Data, RECEIVE_SEQ + i, Buffer.alloc(32, i))).toBe('accepted');
      expect(session.ackable).toBe(RECEIVE_SEQ);
      expect(session.ackPending).toBe(false);
    }
    expect(session.readableLength).toBe(96);
    const callsBefore = owner.ackCalls;
    // read() until null: Node 26's read() with no size gives one chunk, earlier ones all of them.
    const chunks: Buffer[] = [];
    for (let chunk = session.read() as Buffer | null; chunk !== null; chunk = session.read() as Buffer | null) chunks.push(chunk);
    expect(Buffer.concat(chunks).length).toBe(96);
    expect(session.ackable).toBe(RECEIVE_SEQ + 3);
    expect(session.ackPending).toBe(true);
    expect(owner.ackCalls).toBe(callsBefore + 1);
    expect(session.takeAck()).toBe(RECEIVE_SEQ + 3);
    expect(session.ackPending).toBe(false);
  });

  it('acks data that arrives after the consumer caught up', async () => {
    const { session } = makeSession({ readableHighWaterMark: 16 });
    session.receive(PacketType.Data, RECEIVE_SEQ, Buffer.alloc(32));
    expect(session.ackable).toBe(RECEIVE_SEQ);
    const received = readAll(session);
    await once(session, 'data');
    expect(session.ackable).toBe(RECEIVE_SEQ + 1);
    session.receive(PacketType.Data, RECEIVE_SEQ + 1, Buffer.alloc(4));
    expect(session.ackable).toBe(RECEIVE_SEQ + 2);
    session.receive(PacketType.Fin, RECEIVE_SEQ + 2, Buffer.alloc(0));
    expect((await received).length).toBe(36);
    expect(session.ackable).toBe(RECEIVE_SEQ + 3);
  });

  it('regression: data and FIN that arrived while the consumer was behind are acknowledged once it reads them', async () => {
    // Bug: once push(null) has ended the readable side, Node never calls _read() again, so the
    // ack held back by #consumerBehind is never released; the peer keeps DATA and FIN queued forever.
    const { session } = makeSession({ readableHighWaterMark: 16 });
    session.receive(PacketType.Data, RECEIVE_SEQ, Buffer.alloc(32));
    session.receive(PacketType.Fin, RECEIVE_SEQ + 1, Buffer.alloc(0));
    expect((await readAll(session)).length).toBe(32);
    expect(session.ackable).toBe(RECEIVE_SEQ + 2);
    expect(session.ackPending).toBe(true);
  });

  it('acknowledges the OPEN of a session opened by the peer', () => {
    const { session, owner } = makeSession({ receiveSeq: 0 }); // the peer's OPEN had seq 0xffffffff
    session.markOpenedByPeer();
    expect(owner.ackCalls).toBe(1);
    expect(session.ackPending).toBe(true);
    expect(session.takeAck()).toBe(0);
    expect(session.ackPending).toBe(false);
    expect(session.resolveUnknownToPeer(true)).toBe('lost');
  });

  it('acks and drops data received after the application destroyed it', async () => {
    const { session } = makeSession();
    session.destroy();
    await once(session, 'close');
    expect(session.receive(PacketType.Data, RECEIVE_SEQ, Buffer.from('ignored'))).toBe('accepted');
    expect(session.ackable).toBe(RECEIVE_SEQ + 1);
  });
});

/** A sink that records what a session delivers to it, and says it is full when told to. */
class RecordingSink implements SessionSink {
  /** Each write as it came: one buffer, or a payload's slices. */
  readonly writes: Array<Buffer | readonly Buffer[]> = [];
  ended = false;
  full = false;

  write(payload: Buffer | readonly Buffer[]): boolean {
    expect(this.ended).toBe(false);
    expect(payload.length).toBeGreaterThan(0);
    this.writes.push(payload);
    return !this.full;
  }

  end(): void {
    this.ended = true;
  }

  get bytes(): Buffer {
    return Buffer.concat(this.writes.flatMap((payload) => (Buffer.isBuffer(payload) ? [payload] : [...payload])));
  }
}

describe('Session: spliced to a socket (deliverTo and send, without the stream layers)', () => {
  it('delivers received bytes to the sink in order, slices included, and ends it at the FIN', async () => {
    const { session } = makeSession();
    const sink = new RecordingSink();
    session.deliverTo(sink);
    session.receive(PacketType.Data, RECEIVE_SEQ, Buffer.from('one '));
    session.receive(PacketType.Data, RECEIVE_SEQ + 1, [Buffer.from('tw'), Buffer.from('o ')]);
    expect(session.receive(PacketType.Data, RECEIVE_SEQ + 1, Buffer.from('two '))).toBe('duplicate');
    session.receive(PacketType.Data, RECEIVE_SEQ + 2, Buffer.alloc(0)); // takes a seq, writes nothing
    session.receive(PacketType.Fin, RECEIVE_SEQ + 3, Buffer.alloc(0));
    expect(sink.bytes.toString()).toBe('one two ');
    // A payload's slices come in one write, so that the sink can hand them to the kernel at once.
    expect(sink.writes).toHaveLength(2);
    expect(sink.writes[1]).toHaveLength(2);
    expect(sink.ended).toBe(true);
    expect(session.ackable).toBe(RECEIVE_SEQ + 4);
    // The Readable side carried nothing, and still ends at the FIN.
    await once(session, 'end');
    expect(session.readableEnded).toBe(true);
  });

  it('hands over first what arrived before the sink, FIN included, and acknowledges it', () => {
    const { session } = makeSession({ readableHighWaterMark: 16 });
    session.receive(PacketType.Data, RECEIVE_SEQ, Buffer.alloc(32, 0x61));
    session.receive(PacketType.Fin, RECEIVE_SEQ + 1, Buffer.alloc(0));
    expect(session.ackable).toBe(RECEIVE_SEQ); // over the readable mark: held back
    const sink = new RecordingSink();
    session.deliverTo(sink);
    expect(sink.bytes).toEqual(Buffer.alloc(32, 0x61));
    expect(sink.ended).toBe(true);
    expect(session.ackable).toBe(RECEIVE_SEQ + 2);
  });

  it('holds acks while the sink is full and releases them, at once, when it drains', () => {
    const { session, owner } = makeSession();
    const sink = new RecordingSink();
    session.deliverTo(sink);
    sink.full = true;
    session.receive(PacketType.Data, RECEIVE_SEQ, Buffer.from('a'));
    session.receive(PacketType.Data, RECEIVE_SEQ + 1, Buffer.from('b'));
    expect(session.ackable).toBe(RECEIVE_SEQ);
    sink.full = false;
    session.sinkDrained();
    expect(session.ackable).toBe(RECEIVE_SEQ + 2);
    expect(owner.ackTimings.at(-1)).toBe('now');
  });

  it('send queues at once while the window has room, and says when it does not', async () => {
    const { session } = makeSession({ windowBytes: 512, maxFramePayloadBytes: 256 });
    let queuedCalls = 0;
    const onQueued = (): void => {
      queuedCalls++;
    };
    expect(session.send(Buffer.alloc(300, 1), onQueued)).toBe(true);
    expect(session.send(Buffer.alloc(300, 2), onQueued)).toBe(false); // one frame crosses the window; 44 bytes wait
    expect(session.unackedBytes).toBe(556);
    // A caller that sends again before pausing: the bytes wait, in order, behind the others.
    expect(session.send(Buffer.alloc(3, 3), onQueued)).toBe(false);
    expect(queuedCalls).toBe(0);
    const packets = takeAll(session);
    session.acknowledge(packets[1]?.seq as number); // frees the first frame: 256 bytes
    expect(queuedCalls).toBe(1);
    expect(Buffer.concat(takeAll(session).map((packet) => packet.payload))).toEqual(
      Buffer.concat([Buffer.alloc(44, 2), Buffer.alloc(3, 3)]),
    );
    await turn();
    expect(queuedCalls).toBe(1);
  });

  it('end() after a send the window held back queues the FIN behind its bytes', async () => {
    const { session } = makeSession({ windowBytes: 256, maxFramePayloadBytes: 256 });
    expect(session.send(Buffer.alloc(600), () => {})).toBe(false);
    session.end();
    const packets = await takeUntilFin(session);
    expect(packets.map((packet) => packet.payload.length)).toEqual([256, 256, 88, 0]);
    expect(packets.at(-1)?.type).toBe(PacketType.Fin);
  });

  it('send drops bytes once the session can no longer send, and a destroy releases a held send', async () => {
    const { session } = makeSession({ windowBytes: 256, maxFramePayloadBytes: 256 });
    let released = 0;
    const onQueued = (): void => {
      released++;
    };
    expect(session.send(Buffer.alloc(600), onQueued)).toBe(false);
    session.on('error', () => {});
    session.destroy(new Error('socket error'));
    expect(released).toBe(1);
    expect(session.state).toBe('reset-sent');
    const before = session.unackedBytes;
    expect(session.send(Buffer.alloc(10), () => {})).toBe(true);
    expect(session.unackedBytes).toBe(before);
    await closed(session);
  });
});

describe('Session: resume', () => {
  it('resumeFrom(peerAck) drops what the peer has and writes the rest again', async () => {
    const { session } = makeSession({ sendSeq: UINT32_MAX - 1 });
    session.write(Buffer.alloc(256 * 3, 1));
    await trackedWrite(session, Buffer.alloc(10)).done;
    expect(takeAll(session).map((packet) => packet.seq)).toEqual([UINT32_MAX - 1, UINT32_MAX, 0, 1]);
    expect(session.resumeFrom(0)).toBe(2);
    expect(session.unackedPackets).toBe(2);
    expect(takeAll(session).map((packet) => packet.seq)).toEqual([0, 1]);
    expect(session.rewind()).toBe(2);
    expect(takeAll(session).map((packet) => packet.seq)).toEqual([0, 1]);
  });

  it('resolveUnknownToPeer: replay for a fresh client session when the peer kept our state', () => {
    const { session } = makeSession({ sendSeq: 42, receiveSeq: 42 });
    session.queueOpen();
    takeAll(session);
    expect(session.peerHasState).toBe(false);
    expect(session.resolveUnknownToPeer(true)).toBe('replay');
    expect(session.rewind()).toBe(1);
    expect(takeAll(session).map((packet) => packet.type)).toEqual([PacketType.Open]);
  });

  it('resolveUnknownToPeer: replay even with unacknowledged data queued behind the OPEN', async () => {
    const { session } = makeSession({ sendSeq: 42, receiveSeq: 42 });
    session.queueOpen();
    await trackedWrite(session, 'hello').done;
    expect(session.resolveUnknownToPeer(true)).toBe('replay');
  });

  it('resolveUnknownToPeer: a peer that lost its state may have seen what went out, so that session is lost', async () => {
    const { session } = makeSession({ sendSeq: 42, receiveSeq: 42 });
    session.queueOpen();
    await trackedWrite(session, 'hello').done;
    // Never written on any link: the restarted peer cannot have seen it, so it starts afresh.
    expect(session.resolveUnknownToPeer(false)).toBe('replay');
    takeAll(session);
    // Written, never acknowledged: the old peer may have handed it to the target already.
    expect(session.resolveUnknownToPeer(false)).toBe('lost');
  });

  it('resolveUnknownToPeer: lost once the peer acknowledged something', async () => {
    const { session } = makeSession({ sendSeq: 42, receiveSeq: 42 });
    session.queueOpen();
    await trackedWrite(session, 'hello').done;
    session.acknowledge(43);
    expect(session.peerHasState).toBe(true);
    expect(session.resolveUnknownToPeer(true)).toBe('lost');
  });

  it('resolveUnknownToPeer: lost once something was received from the peer', () => {
    const { session } = makeSession({ sendSeq: 42, receiveSeq: 42 });
    session.queueOpen();
    session.receive(PacketType.Data, 42, Buffer.from('hi'));
    expect(session.resolveUnknownToPeer(true)).toBe('lost');
  });

  it('resolveUnknownToPeer: completed after both FINs', async () => {
    const { session } = makeSession({ sendSeq: 42, receiveSeq: 42 });
    session.queueOpen();
    session.acknowledge(43);
    session.resume();
    session.receive(PacketType.Fin, 42, Buffer.alloc(0));
    session.end();
    await once(session, 'finish');
    expect(session.state).toBe('fin-both');
    expect(session.resolveUnknownToPeer(true)).toBe('completed');
  });
});

describe('Session: ownership of written buffers', () => {
  it('copyWrites=true: mutating a buffer after write() does not change the queued packet', async () => {
    const { session } = makeSession({ copyWrites: true });
    const buffer = Buffer.from('original');
    await trackedWrite(session, buffer).done;
    buffer.fill('X');
    const [packet] = takeAll(session);
    expect(packet?.payload.toString()).toBe('original');
  });

  it('copyWrites=false: the queue keeps the caller buffer, so the caller must not mutate it until it is acknowledged', async () => {
    const { session } = makeSession({ copyWrites: false });
    const buffer = Buffer.from('original');
    await trackedWrite(session, buffer).done;
    // The write callback has fired, yet the packet still references the caller's memory:
    // a retransmission after a reconnect would send whatever the buffer holds by then.
    buffer.fill('X');
    const [packet] = takeAll(session);
    expect(packet?.payload.toString()).toBe('XXXXXXXX');
    expect(packet?.payload.buffer).toBe(buffer.buffer);
  });
});

describe('Session: known bugs', () => {
  it('regression: destroy() with a nearly full retransmit queue still queues the RESET', async () => {
    // Bug: the queue bound is windowBytes + maxFramePayloadBytes and the window lets the queue reach
    // windowBytes + maxFramePayloadBytes - 1, so appending the RESET reason in _destroy throws
    // QueueFullError: the session emits that instead, stays 'open', never tells the peer, never finishes.
    const { session } = makeSession({ windowBytes: 100, maxFramePayloadBytes: 100 });
    const errors: unknown[] = [];
    session.on('error', (error: unknown) => errors.push(error));
    await trackedWrite(session, Buffer.alloc(99)).done;
    await trackedWrite(session, Buffer.alloc(100)).done;
    expect(session.unackedBytes).toBe(199);
    session.destroy();
    await closed(session);
    expect(errors).toEqual([]);
    expect(session.state).toBe('reset-sent');
    expect(takeAll(session).at(-1)?.type).toBe(PacketType.Reset);
  });

  it('regression: a FIN crossing our RESET does not stop the session from finishing', async () => {
    // Bug: #onFin moves 'reset-sent' to 'fin-received', so #finishIfDone no longer recognises the
    // acknowledged RESET and sessionFinished is never called (the owner keeps the session forever).
    const { session, owner } = makeSession();
    await trackedWrite(session, 'abc').done;
    session.destroy();
    await once(session, 'close');
    expect(session.state).toBe('reset-sent');
    expect(session.receive(PacketType.Fin, RECEIVE_SEQ, Buffer.alloc(0))).toBe('accepted');
    expect(session.state).toBe('reset-sent');
    session.acknowledge(SEND_SEQ + 2); // DATA and RESET acknowledged
    expect(session.state).toBe('finished');
    expect(owner.finished).toEqual([{ reason: 'reset-sent', detail: 'reset acknowledged' }]);
  });
});
