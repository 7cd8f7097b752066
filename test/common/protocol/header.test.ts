import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ACK_OFFSET,
  FIELD_SIZE,
  HEADER_SIZE,
  LENGTH_OFFSET,
  PacketType,
  SEQ_OFFSET,
  SESSION_OFFSET,
  TYPE_OFFSET,
  UINT32_MAX,
} from '../../../common/protocol/constants.js';
import { decodeHeader, encodeHeader, encodePacket, writeHeader, type PacketHeader } from '../../../common/protocol/header.js';

const FIELDS = ['type', 'sessionId', 'seq', 'ack', 'length'] as const;

/** Naive reference codec: five big-endian uint32 written one after the other through a DataView. */
function referenceEncode(header: PacketHeader): Buffer {
  const view = new DataView(new ArrayBuffer(20));
  view.setUint32(0, header.type, false);
  view.setUint32(4, header.sessionId, false);
  view.setUint32(8, header.seq, false);
  view.setUint32(12, header.ack, false);
  view.setUint32(16, header.length, false);
  return Buffer.from(view.buffer);
}

function referenceDecode(bytes: Buffer): PacketHeader {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return {
    type: view.getUint32(0, false),
    sessionId: view.getUint32(4, false),
    seq: view.getUint32(8, false),
    ack: view.getUint32(12, false),
    length: view.getUint32(16, false),
  };
}

const uint32 = fc.integer({ min: 0, max: UINT32_MAX });
const headerArb: fc.Arbitrary<PacketHeader> = fc.record({
  type: uint32,
  sessionId: uint32,
  seq: uint32,
  ack: uint32,
  length: uint32,
});

describe('header layout', () => {
  it('is five 4-byte fields at offsets 0, 4, 8, 12, 16: 20 bytes in all (the seed header)', () => {
    expect(FIELD_SIZE).toBe(4);
    expect([TYPE_OFFSET, SESSION_OFFSET, SEQ_OFFSET, ACK_OFFSET, LENGTH_OFFSET]).toEqual([0, 4, 8, 12, 16]);
    expect(HEADER_SIZE).toBe(20);
  });

  it('keeps the seed meaning of type 0 (data) and 1 (heartbeat)', () => {
    expect(PacketType.Data).toBe(0);
    expect(PacketType.Heartbeat).toBe(1);
  });
});

describe('encodeHeader / decodeHeader', () => {
  it('matches a golden DATA header', () => {
    const header: PacketHeader = {
      type: PacketType.Data,
      sessionId: 0x01020304,
      seq: 0xffffffff,
      ack: 0x80000000,
      length: 16,
    };
    const golden = Buffer.from(
      [
        '00000000', // type: 0 = DATA
        '01020304', // session id 0x01020304
        'ffffffff', // seq: UINT32_MAX (the value just before the wrap)
        '80000000', // ack: 2^31, top bit set (a `<< 24` reader would turn it negative)
        '00000010', // length: 16 payload bytes
      ].join(''),
      'hex',
    );
    expect(encodeHeader(header).toString('hex')).toBe(golden.toString('hex'));
    expect(decodeHeader(golden)).toEqual(header);
  });

  it('encodePacket puts the same header before a copy of the payload', () => {
    const payload = Buffer.from('keystroke');
    const header: PacketHeader = { type: PacketType.Data, sessionId: 9, seq: 7, ack: 3, length: payload.length };
    const packet = encodePacket(header, payload);
    expect(packet.equals(Buffer.concat([encodeHeader(header), payload]))).toBe(true);
    payload.fill(0);
    expect(packet.subarray(HEADER_SIZE).toString()).toBe('keystroke');
  });

  it('matches a golden HEARTBEAT header', () => {
    const golden = Buffer.from(
      [
        '00000001', // type: 1 = HEARTBEAT
        '00000000', // session id 0: the link itself
        '00000000', // seq: unused (not sequenced)
        '00000000', // ack: unused
        '00000000', // length: no payload
      ].join(''),
      'hex',
    );
    const header: PacketHeader = { type: PacketType.Heartbeat, sessionId: 0, seq: 0, ack: 0, length: 0 };
    expect(encodeHeader(header).equals(golden)).toBe(true);
    expect(decodeHeader(golden)).toEqual(header);
  });

  it.each([0, 1, 0x7fffffff, 0x80000000, 0xfffffffe, UINT32_MAX])('round-trips %d in every field', (value) => {
    for (const field of FIELDS) {
      const header: PacketHeader = { type: 0, sessionId: 0, seq: 0, ack: 0, length: 0, [field]: value };
      const decoded = decodeHeader(encodeHeader(header));
      expect(decoded).toEqual(header);
      expect(decoded[field]).toBe(value);
    }
  });

  it('round-trips all fields at 0 and all fields at 0xFFFFFFFF', () => {
    const zeros: PacketHeader = { type: 0, sessionId: 0, seq: 0, ack: 0, length: 0 };
    const ones: PacketHeader = { type: UINT32_MAX, sessionId: UINT32_MAX, seq: UINT32_MAX, ack: UINT32_MAX, length: UINT32_MAX };
    expect(encodeHeader(zeros).toString('hex')).toBe('00'.repeat(20));
    expect(encodeHeader(ones).toString('hex')).toBe('ff'.repeat(20));
    expect(decodeHeader(encodeHeader(zeros))).toEqual(zeros);
    expect(decodeHeader(encodeHeader(ones))).toEqual(ones);
  });

  it('agrees with a naive DataView reference in both directions', () => {
    fc.assert(
      fc.property(headerArb, (header) => {
        const encoded = encodeHeader(header);
        expect(encoded.length).toBe(HEADER_SIZE);
        expect(encoded.equals(referenceEncode(header))).toBe(true);
        expect(decodeHeader(encoded)).toEqual(referenceDecode(encoded));
        expect(decodeHeader(encoded)).toEqual(header);
      }),
      { numRuns: 500 },
    );
  });

  it('decodes any 20 bytes like the DataView reference, never negative', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 20, maxLength: 20 }), (bytes) => {
        const buffer = Buffer.from(bytes);
        const decoded = decodeHeader(buffer);
        expect(decoded).toEqual(referenceDecode(buffer));
        for (const field of FIELDS) expect(decoded[field]).toBeGreaterThanOrEqual(0);
      }),
      { numRuns: 300 },
    );
  });

  it('writes and reads at an offset inside a larger buffer without touching the bytes around it', () => {
    const header: PacketHeader = { type: PacketType.Ack, sessionId: 9, seq: 0, ack: 0xdeadbeef, length: 0 };
    const target = Buffer.alloc(30, 0xaa);
    writeHeader(target, header, 5);
    expect(target.subarray(0, 5).equals(Buffer.alloc(5, 0xaa))).toBe(true);
    expect(target.subarray(25).equals(Buffer.alloc(5, 0xaa))).toBe(true);
    expect(target.subarray(5, 25).equals(referenceEncode(header))).toBe(true);
    expect(decodeHeader(target, 5)).toEqual(header);
  });

  it.each([
    ['type', -1],
    ['sessionId', UINT32_MAX + 1],
    ['seq', 1.5],
    ['ack', Number.NaN],
    ['length', 2 ** 40],
    ['length', Number.POSITIVE_INFINITY],
  ] as const)('rejects %s = %d with a RangeError', (field, value) => {
    const header: PacketHeader = { type: 0, sessionId: 0, seq: 0, ack: 0, length: 0, [field]: value };
    expect(() => encodeHeader(header)).toThrow(RangeError);
    expect(() => encodeHeader(header)).toThrow(`header field ${field} must be an unsigned 32-bit integer, got ${value}`);
  });

  it('rejects before writing anything when a later field is out of range', () => {
    const target = Buffer.alloc(20, 0x55);
    expect(() => writeHeader(target, { type: 1, sessionId: 2, seq: 3, ack: 4, length: -1 })).toThrow(RangeError);
    expect(target.equals(Buffer.alloc(20, 0x55))).toBe(true);
  });
});
