import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { QueueFullError } from '../../../common/support/errors.js';
import { PacketType, UINT32_MAX } from '../../../common/protocol/constants.js';
import { seqAdd, seqBefore } from '../../../common/protocol/seq.js';
import { RetransmitQueue, type QueuedPacket } from '../../../common/engine/retransmit-queue.js';

function bytes(n: number, fill = 0x61): Buffer {
  return Buffer.alloc(n, fill);
}

/** Takes every packet the cursor still has and returns their seqs. */
function drainSeqs(queue: RetransmitQueue): number[] {
  const seqs: number[] = [];
  for (let packet = queue.takeNext(); packet !== null; packet = queue.takeNext()) seqs.push(packet.seq);
  return seqs;
}

/** A queue holding packets with seqs first, first+1, ... of the given payload sizes. */
function queueWith(first: number, sizes: number[], maxBytes = 1 << 20): RetransmitQueue {
  const queue = new RetransmitQueue(maxBytes);
  sizes.forEach((size, i) => queue.append(PacketType.Data, seqAdd(first, i), bytes(size)));
  return queue;
}

describe('RetransmitQueue: append and acknowledge', () => {
  it('starts empty', () => {
    const queue = new RetransmitQueue(100);
    expect(queue.length).toBe(0);
    expect(queue.bytes).toBe(0);
    expect(queue.maxBytes).toBe(100);
    expect(queue.oldestSeq).toBeNull();
    expect(queue.hasUnsent).toBe(false);
    expect(queue.takeNext()).toBeNull();
    expect(queue.acknowledge(5)).toBe(0);
  });

  it('counts packets and payload bytes as they are appended', () => {
    const queue = new RetransmitQueue(1000);
    queue.append(PacketType.Open, 10, Buffer.alloc(0));
    queue.append(PacketType.Data, 11, bytes(100));
    queue.append(PacketType.Data, 12, bytes(250));
    queue.append(PacketType.Fin, 13, Buffer.alloc(0));
    expect(queue.length).toBe(4);
    expect(queue.bytes).toBe(350);
    expect(queue.oldestSeq).toBe(10);
  });

  it('drops exactly the packets before the cumulative ack, oldest first', () => {
    const queue = queueWith(10, [1, 2, 3, 4, 5]);
    expect(queue.acknowledge(10)).toBe(0); // ack = oldest seq: nothing acknowledged yet
    expect(queue.acknowledge(9)).toBe(0); // an old ack changes nothing
    expect(queue.length).toBe(5);
    expect(queue.acknowledge(11)).toBe(1);
    expect(queue.oldestSeq).toBe(11);
    expect(queue.bytes).toBe(2 + 3 + 4 + 5);
    expect(queue.acknowledge(14)).toBe(3); // cumulative: 11, 12, 13 at once
    expect(queue.oldestSeq).toBe(14);
    expect(queue.bytes).toBe(5);
    expect(queue.length).toBe(1);
    expect(queue.acknowledge(15)).toBe(1);
    expect(queue.length).toBe(0);
    expect(queue.bytes).toBe(0);
    expect(queue.oldestSeq).toBeNull();
  });

  it('keeps packets in order and hands back the appended objects', () => {
    const queue = new RetransmitQueue(1000);
    const payloads = [bytes(3, 1), bytes(4, 2), bytes(5, 3)];
    payloads.forEach((payload, i) => queue.append(PacketType.Data, 100 + i, payload));
    const taken: QueuedPacket[] = [];
    for (let packet = queue.takeNext(); packet !== null; packet = queue.takeNext()) taken.push(packet);
    expect(taken.map((packet) => packet.seq)).toEqual([100, 101, 102]);
    expect(taken.map((packet) => packet.type)).toEqual([PacketType.Data, PacketType.Data, PacketType.Data]);
    // The queue owns the caller's buffer; it does not copy (see Session copyWrites).
    taken.forEach((packet, i) => expect(packet.payload).toBe(payloads[i]));
  });

  it('acknowledges across the 2^32 wrap', () => {
    const queue = queueWith(UINT32_MAX - 1, [1, 1, 1, 1]); // seqs 0xfffffffe, 0xffffffff, 0, 1
    expect(drainSeqs(queue)).toEqual([UINT32_MAX - 1, UINT32_MAX, 0, 1]);
    expect(queue.acknowledge(UINT32_MAX)).toBe(1);
    expect(queue.acknowledge(0)).toBe(1);
    expect(queue.oldestSeq).toBe(0);
    expect(queue.acknowledge(2)).toBe(2);
    expect(queue.length).toBe(0);
  });

  it('acknowledges everything with an ack far past the wrap in one call', () => {
    const queue = queueWith(0xfffffff0, Array.from({ length: 32 }, () => 10));
    expect(queue.acknowledge(0x10)).toBe(32);
    expect(queue.bytes).toBe(0);
  });

  it('appends again after being emptied by an ack', () => {
    const queue = queueWith(1, [5, 5]);
    queue.acknowledge(3);
    queue.append(PacketType.Data, 3, bytes(7));
    queue.append(PacketType.Fin, 4, Buffer.alloc(0));
    expect(queue.oldestSeq).toBe(3);
    expect(queue.length).toBe(2);
    expect(queue.bytes).toBe(7);
    expect(drainSeqs(queue)).toEqual([3, 4]);
  });

  it('clear() drops everything', () => {
    const queue = queueWith(1, [5, 5, 5]);
    queue.clear();
    expect(queue.length).toBe(0);
    expect(queue.bytes).toBe(0);
    expect(queue.oldestSeq).toBeNull();
    expect(queue.hasUnsent).toBe(false);
    expect(queue.takeNext()).toBeNull();
    queue.append(PacketType.Data, 50, bytes(1));
    expect(drainSeqs(queue)).toEqual([50]);
  });
});

describe('RetransmitQueue: cursor', () => {
  it('takeNext yields each packet once, then null; a later append is yielded next', () => {
    const queue = queueWith(1, [1, 1, 1]);
    expect(queue.hasUnsent).toBe(true);
    expect(drainSeqs(queue)).toEqual([1, 2, 3]);
    expect(queue.hasUnsent).toBe(false);
    expect(queue.takeNext()).toBeNull();
    // Taking does not remove: the packets stay until acknowledged.
    expect(queue.length).toBe(3);
    queue.append(PacketType.Data, 4, bytes(1));
    expect(queue.hasUnsent).toBe(true);
    expect(drainSeqs(queue)).toEqual([4]);
  });

  it('rewind returns the unacknowledged count and yields again from the oldest unacknowledged packet', () => {
    const queue = queueWith(1, [1, 1, 1, 1, 1]);
    expect(drainSeqs(queue)).toEqual([1, 2, 3, 4, 5]);
    queue.acknowledge(3);
    expect(queue.rewind()).toBe(3);
    expect(queue.hasUnsent).toBe(true);
    expect(drainSeqs(queue)).toEqual([3, 4, 5]);
  });

  it('rewind in the middle of a pass starts over from the oldest', () => {
    const queue = queueWith(1, [1, 1, 1, 1]);
    expect(queue.takeNext()?.seq).toBe(1);
    expect(queue.takeNext()?.seq).toBe(2);
    expect(queue.rewind()).toBe(4);
    expect(drainSeqs(queue)).toEqual([1, 2, 3, 4]);
  });

  it('rewind on an empty queue returns 0 and yields nothing', () => {
    const queue = queueWith(1, [1]);
    queue.acknowledge(2);
    expect(queue.rewind()).toBe(0);
    expect(queue.hasUnsent).toBe(false);
    expect(queue.takeNext()).toBeNull();
  });

  it('an ack covering unsent packets moves the cursor past them', () => {
    const queue = queueWith(1, [1, 1, 1, 1]);
    expect(queue.takeNext()?.seq).toBe(1);
    // Packets 1..3 acknowledged (e.g. via a SYNC after reconnecting) while only 1 was written here.
    expect(queue.acknowledge(4)).toBe(3);
    expect(drainSeqs(queue)).toEqual([4]);
  });

  it('an ack covering everything leaves nothing unsent', () => {
    const queue = queueWith(1, [1, 1]);
    queue.acknowledge(3);
    expect(queue.hasUnsent).toBe(false);
    expect(queue.takeNext()).toBeNull();
  });
});

describe('RetransmitQueue: bytes in flight', () => {
  it('counts what was taken and not yet acknowledged; a rewind or an ack of unsent packets takes nothing off twice', () => {
    const queue = queueWith(10, [5, 7, 11]);
    expect(queue.sentBytes).toBe(0);
    queue.takeNext();
    queue.takeNext();
    expect(queue.sentBytes).toBe(12);
    queue.acknowledge(11);
    expect(queue.sentBytes).toBe(7);
    queue.rewind();
    expect(queue.sentBytes).toBe(0);
    // The peer had both on the old link: acknowledged before they went out again.
    queue.acknowledge(13);
    expect(queue.sentBytes).toBe(0);
    expect(queue.bytes).toBe(0);
    queue.append(PacketType.Data, 13, bytes(3));
    queue.takeNext();
    expect(queue.sentBytes).toBe(3);
    queue.clear();
    expect(queue.sentBytes).toBe(0);
  });
});

describe('RetransmitQueue: byte bound', () => {
  it('accepts up to maxBytes exactly, then throws QueueFullError', () => {
    const queue = new RetransmitQueue(100);
    queue.append(PacketType.Data, 1, bytes(60));
    queue.append(PacketType.Data, 2, bytes(40));
    expect(queue.bytes).toBe(100);
    let caught: unknown;
    try {
      queue.append(PacketType.Data, 3, bytes(1));
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(QueueFullError);
    const error = caught as QueueFullError;
    expect(error.code).toBe('ETCP_ERR_QUEUE_FULL');
    expect(error.message).toBe('retransmit queue would hold 101 bytes, over its bound of 100');
    expect(error.bytes).toBe(101);
    expect(error.maxBytes).toBe(100);
  });

  it('is unchanged by a rejected append', () => {
    const queue = queueWith(1, [80], 100);
    expect(() => queue.append(PacketType.Data, 2, bytes(21))).toThrow(QueueFullError);
    expect(queue.length).toBe(1);
    expect(queue.bytes).toBe(80);
    expect(drainSeqs(queue)).toEqual([1]);
  });

  it('still takes zero-length packets (OPEN, FIN) when full', () => {
    const queue = queueWith(1, [100], 100);
    queue.append(PacketType.Fin, 2, Buffer.alloc(0));
    expect(queue.length).toBe(2);
  });

  it('frees room on acknowledge', () => {
    const queue = queueWith(1, [50, 50], 100);
    expect(() => queue.append(PacketType.Data, 3, bytes(50))).toThrow(QueueFullError);
    queue.acknowledge(2);
    queue.append(PacketType.Data, 3, bytes(50));
    expect(queue.bytes).toBe(100);
  });
});

type Op =
  | { kind: 'append'; size: number }
  | { kind: 'ack'; advance: number }
  | { kind: 'take' }
  | { kind: 'rewind' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('append' as const), size: fc.integer({ min: 0, max: 40 }) }),
  fc.record({ kind: fc.constant('ack' as const), advance: fc.integer({ min: 0, max: 4 }) }),
  fc.record({ kind: fc.constant('take' as const) }),
  fc.record({ kind: fc.constant('rewind' as const) }),
);

describe('RetransmitQueue: model check', () => {
  it('behaves like an array of (seq, size) with a cursor index, across the wrap', () => {
    fc.assert(
      fc.property(fc.integer({ min: UINT32_MAX - 20, max: UINT32_MAX }), fc.array(opArb, { maxLength: 80 }), (first, ops) => {
        const maxBytes = 100;
        const queue = new RetransmitQueue(maxBytes);
        let model: { seq: number; size: number }[] = [];
        let cursor = 0; // index into model of the next packet to take
        let nextSeq = first;
        for (const op of ops) {
          switch (op.kind) {
            case 'append': {
              const held = model.reduce((sum, packet) => sum + packet.size, 0);
              if (held + op.size > maxBytes) {
                expect(() => queue.append(PacketType.Data, nextSeq, bytes(op.size))).toThrow(QueueFullError);
              } else {
                queue.append(PacketType.Data, nextSeq, bytes(op.size));
                model.push({ seq: nextSeq, size: op.size });
                nextSeq = seqAdd(nextSeq, 1);
              }
              break;
            }
            case 'ack': {
              const oldest = model[0]?.seq ?? nextSeq;
              const ack = seqAdd(oldest, Math.min(op.advance, model.length));
              const dropped = model.filter((packet) => seqBefore(packet.seq, ack)).length;
              expect(queue.acknowledge(ack)).toBe(dropped);
              model = model.slice(dropped);
              cursor = Math.max(0, cursor - dropped);
              break;
            }
            case 'take': {
              const packet = queue.takeNext();
              const expected = model[cursor];
              if (expected === undefined) {
                expect(packet).toBeNull();
              } else {
                expect(packet?.seq).toBe(expected.seq);
                expect(packet?.payload.length).toBe(expected.size);
                cursor++;
              }
              break;
            }
            case 'rewind':
              expect(queue.rewind()).toBe(model.length);
              cursor = 0;
              break;
          }
          expect(queue.length).toBe(model.length);
          expect(queue.bytes).toBe(model.reduce((sum, packet) => sum + packet.size, 0));
          expect(queue.oldestSeq).toBe(model[0]?.seq ?? null);
          expect(queue.hasUnsent).toBe(cursor < model.length);
          expect(queue.sentBytes).toBe(model.slice(0, cursor).reduce((sum, packet) => sum + packet.size, 0));
        }
      }),
      { numRuns: 300 },
    );
  });
});
