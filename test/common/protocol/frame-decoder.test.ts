import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BufferLimitError, EternalError, FrameTooLargeError, UnknownPacketTypeError } from '../../../common/support/errors.js';
import {
  HEADER_SIZE,
  MAX_PAYLOAD_BYTES,
  PACKET_TYPE_LIMIT,
  PacketType,
  UINT32_MAX,
} from '../../../common/protocol/constants.js';
import { FrameDecoder, type Frame } from '../../../common/protocol/frame-decoder.js';
import { encodeHeader, type PacketHeader } from '../../../common/protocol/header.js';
import { catchError } from '../../helpers/expect-error.js';
import { splitAt } from '../../helpers/split.js';

interface PlainFrame {
  header: PacketHeader;
  payload: string; // hex, so that toEqual compares contents, not Buffer views
}

function frameBytes(header: Omit<PacketHeader, 'length'>, payload: Buffer): Buffer {
  return Buffer.concat([encodeHeader({ ...header, length: payload.length }), payload]);
}

function plain(frames: Frame[]): PlainFrame[] {
  return frames.map((frame) => ({ header: frame.header, payload: frame.payload.toString('hex') }));
}

function expectEternalError(error: unknown, errorClass: typeof FrameTooLargeError | typeof UnknownPacketTypeError, code: string, message: string): void {
  expect(error).toBeInstanceOf(errorClass);
  expect(error).toBeInstanceOf(EternalError);
  expect((error as EternalError).code).toBe(code);
  expect((error as EternalError).message).toBe(message);
  expect((error as EternalError).name).toBe(errorClass.name);
}

const SAMPLE_HEADER = { type: PacketType.Data, sessionId: 0x11223344, seq: 0xfffffffe, ack: 0x80000001 } as const;
const SAMPLE_PAYLOAD = Buffer.from('hello, eternal world', 'utf8');
const SAMPLE = frameBytes(SAMPLE_HEADER, SAMPLE_PAYLOAD);
const SAMPLE_FRAME: PlainFrame = {
  header: { ...SAMPLE_HEADER, length: SAMPLE_PAYLOAD.length },
  payload: SAMPLE_PAYLOAD.toString('hex'),
};

describe('FrameDecoder: splits and coalescing', () => {
  it('decodes one frame pushed whole', () => {
    const decoder = new FrameDecoder();
    expect(plain(decoder.push(SAMPLE))).toEqual([SAMPLE_FRAME]);
    expect(decoder.bufferedBytes).toBe(0);
  });

  it.each(Array.from({ length: HEADER_SIZE }, (_, offset) => offset))(
    'decodes a header split at offset %d (three separate pushes)',
    (offset) => {
      const decoder = new FrameDecoder();
      const first = SAMPLE.subarray(0, offset);
      const second = SAMPLE.subarray(offset, HEADER_SIZE);
      const payload = SAMPLE.subarray(HEADER_SIZE);
      expect(decoder.push(first)).toEqual([]);
      expect(decoder.bufferedBytes).toBe(offset);
      // The header is complete, the payload is not there yet.
      expect(decoder.push(second)).toEqual([]);
      expect(decoder.bufferedBytes).toBe(0);
      expect(plain(decoder.push(payload))).toEqual([SAMPLE_FRAME]);
      expect(decoder.bufferedBytes).toBe(0);
    },
  );

  it('decodes a frame fed one byte per push', () => {
    const decoder = new FrameDecoder();
    const frames: Frame[] = [];
    for (let i = 0; i < SAMPLE.length; i++) {
      const out = decoder.push(SAMPLE.subarray(i, i + 1));
      if (i < SAMPLE.length - 1) expect(out).toEqual([]);
      frames.push(...out);
    }
    expect(plain(frames)).toEqual([SAMPLE_FRAME]);
  });

  it.each(Array.from({ length: SAMPLE_PAYLOAD.length + 1 }, (_, point) => point))(
    'decodes a payload split at byte %d',
    (point) => {
      const decoder = new FrameDecoder();
      const cut = HEADER_SIZE + point;
      const before = decoder.push(SAMPLE.subarray(0, cut));
      if (point === SAMPLE_PAYLOAD.length) {
        expect(plain(before)).toEqual([SAMPLE_FRAME]);
      } else {
        expect(before).toEqual([]);
        expect(decoder.bufferedBytes).toBe(point);
      }
      const after = decoder.push(SAMPLE.subarray(cut));
      expect(plain([...before, ...after])).toEqual([SAMPLE_FRAME]);
      expect(decoder.bufferedBytes).toBe(0);
    },
  );

  it('decodes many frames coalesced in one chunk, in order', () => {
    const expected: PlainFrame[] = [];
    const parts: Buffer[] = [];
    for (let i = 0; i < 200; i++) {
      const payload = Buffer.alloc(i % 7, i & 0xff);
      const header = { type: i % PACKET_TYPE_LIMIT, sessionId: i, seq: (0xffffff00 + i) >>> 0, ack: i * 3 };
      parts.push(frameBytes(header, payload));
      expected.push({ header: { ...header, length: payload.length }, payload: payload.toString('hex') });
    }
    const decoder = new FrameDecoder();
    expect(plain(decoder.push(Buffer.concat(parts)))).toEqual(expected);
    expect(decoder.bufferedBytes).toBe(0);
  });

  it('returns the complete frames of a chunk and keeps the partial tail', () => {
    const decoder = new FrameDecoder();
    const stream = Buffer.concat([SAMPLE, SAMPLE, SAMPLE]);
    const cut = SAMPLE.length * 2 + 7;
    expect(plain(decoder.push(stream.subarray(0, cut)))).toEqual([SAMPLE_FRAME, SAMPLE_FRAME]);
    expect(decoder.bufferedBytes).toBe(7);
    expect(plain(decoder.push(stream.subarray(cut)))).toEqual([SAMPLE_FRAME]);
  });

  it('takes an empty chunk at any point without effect', () => {
    const decoder = new FrameDecoder();
    expect(decoder.push(Buffer.alloc(0))).toEqual([]);
    expect(decoder.bufferedBytes).toBe(0);
    expect(decoder.push(SAMPLE.subarray(0, 5))).toEqual([]);
    expect(decoder.push(Buffer.alloc(0))).toEqual([]);
    expect(decoder.bufferedBytes).toBe(5);
    expect(decoder.push(SAMPLE.subarray(5, HEADER_SIZE))).toEqual([]);
    expect(decoder.push(Buffer.alloc(0))).toEqual([]);
    expect(plain(decoder.push(SAMPLE.subarray(HEADER_SIZE)))).toEqual([SAMPLE_FRAME]);
    expect(decoder.push(Buffer.alloc(0))).toEqual([]);
    expect(decoder.bufferedBytes).toBe(0);
  });

  it('yields a zero-length frame as soon as its header is complete', () => {
    const decoder = new FrameDecoder();
    const heartbeat = frameBytes({ type: PacketType.Heartbeat, sessionId: 0, seq: 0, ack: 0 }, Buffer.alloc(0));
    expect(decoder.push(heartbeat.subarray(0, HEADER_SIZE - 1))).toEqual([]);
    const frames = decoder.push(heartbeat.subarray(HEADER_SIZE - 1));
    expect(frames).toHaveLength(1);
    expect(frames[0]?.header).toEqual({ type: PacketType.Heartbeat, sessionId: 0, seq: 0, ack: 0, length: 0 });
    expect(frames[0]?.payload.length).toBe(0);
    expect(decoder.bufferedBytes).toBe(0);
  });

  it('decodes runs of zero-length frames mixed with data frames', () => {
    const empty = frameBytes({ type: PacketType.Fin, sessionId: 3, seq: 9, ack: 1 }, Buffer.alloc(0));
    const decoder = new FrameDecoder();
    const frames = decoder.push(Buffer.concat([empty, empty, SAMPLE, empty]));
    expect(frames.map((frame) => frame.header.length)).toEqual([0, 0, SAMPLE_PAYLOAD.length, 0]);
    expect(frames.map((frame) => frame.header.type)).toEqual([PacketType.Fin, PacketType.Fin, PacketType.Data, PacketType.Fin]);
  });

  it('returns a payload lying inside one chunk as a view of that chunk (no copy)', () => {
    const chunk = Buffer.from(SAMPLE);
    const [frame] = new FrameDecoder().push(chunk);
    expect(frame?.payload.buffer).toBe(chunk.buffer);
    chunk[HEADER_SIZE] = 0x21;
    expect(frame?.payload[0]).toBe(0x21);
  });

  it('hands a payload spanning three chunks on as three views of them, copying nothing', () => {
    const bytes = frameBytes({ type: PacketType.Data, sessionId: 1, seq: 0, ack: 0 }, Buffer.from('0123456789'));
    const chunks = [bytes.subarray(0, HEADER_SIZE + 3), bytes.subarray(HEADER_SIZE + 3, HEADER_SIZE + 7), bytes.subarray(HEADER_SIZE + 7)].map(
      (chunk) => Buffer.from(chunk), // each chunk its own memory, as socket reads are
    );
    const decoder = new FrameDecoder();
    const frames = chunks.flatMap((chunk) => decoder.push(chunk));
    expect(frames).toHaveLength(1);
    const parts = frames[0]?.parts ?? [];
    expect(parts.map((part) => part.toString())).toEqual(['012', '3456', '789']);
    parts.forEach((part, i) => expect(part.buffer).toBe(chunks[i]?.buffer));
    // Joined only when asked, for the control payloads that are parsed.
    expect(frames[0]?.payload.toString()).toBe('0123456789');
  });

  it('gives an empty payload no parts', () => {
    const [frame] = new FrameDecoder().push(encodeHeader({ type: PacketType.Ack, sessionId: 1, seq: 0, ack: 5, length: 0 }));
    expect(frame?.parts).toEqual([]);
    expect(frame?.payload.length).toBe(0);
  });

  it('accepts a payload of exactly maxPayloadBytes', () => {
    const payload = Buffer.alloc(MAX_PAYLOAD_BYTES, 0x42);
    const decoder = new FrameDecoder();
    const frames = decoder.push(frameBytes({ type: PacketType.Data, sessionId: 1, seq: 0, ack: 0 }, payload));
    expect(frames).toHaveLength(1);
    expect(frames[0]?.payload.equals(payload)).toBe(true);
  });
});

describe('FrameDecoder: limits and bad input', () => {
  it('rejects a 0xFFFFFFFF length as soon as the 20 header bytes arrive, before any payload', () => {
    const decoder = new FrameDecoder();
    const header = encodeHeader({ type: PacketType.Data, sessionId: 1, seq: 0, ack: 0, length: UINT32_MAX });
    for (let i = 0; i < HEADER_SIZE - 1; i++) expect(decoder.push(header.subarray(i, i + 1))).toEqual([]);
    const error = catchError(() => decoder.push(header.subarray(HEADER_SIZE - 1)));
    expectEternalError(
      error,
      FrameTooLargeError,
      'ETCP_ERR_FRAME_TOO_LARGE',
      `frame payload of ${UINT32_MAX} bytes exceeds the maximum of ${MAX_PAYLOAD_BYTES}`,
    );
    expect((error as FrameTooLargeError).length).toBe(UINT32_MAX);
    expect((error as FrameTooLargeError).maxPayloadBytes).toBe(MAX_PAYLOAD_BYTES);
  });

  it('rejects one byte over a custom maxPayloadBytes and accepts exactly it', () => {
    const decoder = new FrameDecoder({ maxPayloadBytes: 100 });
    expect(decoder.maxBufferedBytes).toBe(HEADER_SIZE + 100);
    const ok = frameBytes({ type: PacketType.Data, sessionId: 1, seq: 0, ack: 0 }, Buffer.alloc(100));
    expect(decoder.push(ok)).toHaveLength(1);
    const tooBig = encodeHeader({ type: PacketType.Data, sessionId: 1, seq: 1, ack: 0, length: 101 });
    expectEternalError(
      catchError(() => decoder.push(tooBig)),
      FrameTooLargeError,
      'ETCP_ERR_FRAME_TOO_LARGE',
      'frame payload of 101 bytes exceeds the maximum of 100',
    );
  });

  it.each([PACKET_TYPE_LIMIT, PACKET_TYPE_LIMIT + 1, 0x100, UINT32_MAX])('rejects unknown packet type %d', (type) => {
    const decoder = new FrameDecoder();
    const error = catchError(() => decoder.push(encodeHeader({ type, sessionId: 0, seq: 0, ack: 0, length: 0 })));
    expectEternalError(error, UnknownPacketTypeError, 'ETCP_ERR_UNKNOWN_PACKET_TYPE', `unknown packet type ${type}`);
    expect((error as UnknownPacketTypeError).packetType).toBe(type);
  });

  it('accepts every defined type, the last one being PACKET_TYPE_LIMIT - 1', () => {
    expect(PACKET_TYPE_LIMIT - 1).toBe(PacketType.ListenReply);
    const decoder = new FrameDecoder();
    const stream = Buffer.concat(
      Array.from({ length: PACKET_TYPE_LIMIT }, (_, type) => encodeHeader({ type, sessionId: 0, seq: 0, ack: 0, length: 0 })),
    );
    expect(decoder.push(stream).map((frame) => frame.header.type)).toEqual(Array.from({ length: PACKET_TYPE_LIMIT }, (_, t) => t));
  });

  it('rejects an unknown type even with an oversized length, before buffering the payload', () => {
    const decoder = new FrameDecoder();
    const header = encodeHeader({ type: PACKET_TYPE_LIMIT, sessionId: 0, seq: 0, ack: 0, length: UINT32_MAX });
    expect(() => decoder.push(header)).toThrow(UnknownPacketTypeError);
  });

  it('checks a bad header found after good frames in the same chunk', () => {
    const decoder = new FrameDecoder();
    const bad = encodeHeader({ type: 200, sessionId: 0, seq: 0, ack: 0, length: 0 });
    expect(() => decoder.push(Buffer.concat([SAMPLE, SAMPLE, bad]))).toThrow(UnknownPacketTypeError);
  });
});

interface RandomFrame {
  header: Omit<PacketHeader, 'length'>;
  payload: Uint8Array;
}

const uint32 = fc.integer({ min: 0, max: UINT32_MAX });
const randomFrame: fc.Arbitrary<RandomFrame> = fc.record({
  header: fc.record({ type: fc.integer({ min: 0, max: PACKET_TYPE_LIMIT - 1 }), sessionId: uint32, seq: uint32, ack: uint32 }),
  payload: fc.oneof(fc.uint8Array({ maxLength: 0 }), fc.uint8Array({ maxLength: 64 }), fc.uint8Array({ maxLength: 600 })),
});

/** A valid stream and the cut points at which to split it. */
const splitStream = fc
  .array(randomFrame, { maxLength: 12 })
  .chain((frames) => {
    const stream = Buffer.concat(frames.map((frame) => frameBytes(frame.header, Buffer.from(frame.payload))));
    return fc.record({
      frames: fc.constant(frames),
      stream: fc.constant(stream),
      cuts: fc.array(fc.integer({ min: 0, max: stream.length }), { maxLength: 40 }),
    });
  });

/** Bytes that look like headers often enough to reach the length check and the payload path. */
const headerLike = fc
  .record({
    type: fc.oneof(fc.integer({ min: 0, max: PACKET_TYPE_LIMIT + 2 }), uint32),
    length: fc.oneof(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 300 }), uint32),
    tail: fc.uint8Array({ maxLength: 80 }),
  })
  .map(({ type, length, tail }) =>
    Buffer.concat([encodeHeader({ type, sessionId: 1, seq: 2, ack: 3, length }), Buffer.from(tail)]),
  );

const noisyBytes = fc.oneof(
  fc.uint8Array({ maxLength: 400 }).map((bytes) => Buffer.from(bytes)),
  fc.array(headerLike, { maxLength: 8 }).map((parts) => Buffer.concat(parts)),
);

describe('FrameDecoder: properties', () => {
  it('gives the same frames for any split of a valid stream', () => {
    fc.assert(
      fc.property(splitStream, ({ frames, stream, cuts }) => {
        const decoder = new FrameDecoder();
        const pieces = splitAt(stream, cuts);
        const decoded: Frame[] = [];
        for (const piece of pieces) {
          decoded.push(...decoder.push(piece));
          expect(decoder.bufferedBytes).toBeLessThanOrEqual(decoder.maxBufferedBytes);
        }
        expect(plain(decoded)).toEqual(
          frames.map((frame) => ({
            header: { ...frame.header, length: frame.payload.length },
            payload: Buffer.from(frame.payload).toString('hex'),
          })),
        );
        expect(decoder.bufferedBytes).toBe(0);
      }),
      { numRuns: 400 },
    );
  });

  it('throws nothing but FrameTooLargeError / UnknownPacketTypeError on random bytes, and stays bounded', () => {
    fc.assert(
      fc.property(
        noisyBytes,
        fc.array(fc.nat({ max: 2000 }), { maxLength: 10 }),
        fc.constantFrom(0, 16, 100, MAX_PAYLOAD_BYTES),
        (bytes, cuts, maxPayloadBytes) => {
          const decoder = new FrameDecoder({ maxPayloadBytes });
          try {
            for (const piece of splitAt(bytes, cuts.map((cut) => cut % (bytes.length + 1)))) {
              for (const frame of decoder.push(piece)) {
                expect(frame.header.type).toBeLessThan(PACKET_TYPE_LIMIT);
                expect(frame.payload.length).toBe(frame.header.length);
                expect(frame.payload.length).toBeLessThanOrEqual(maxPayloadBytes);
              }
              expect(decoder.bufferedBytes).toBeLessThanOrEqual(decoder.maxBufferedBytes);
            }
          } catch (error) {
            if (error instanceof FrameTooLargeError) {
              expect(error.code).toBe('ETCP_ERR_FRAME_TOO_LARGE');
            } else if (error instanceof UnknownPacketTypeError) {
              expect(error.code).toBe('ETCP_ERR_UNKNOWN_PACKET_TYPE');
            } else {
              throw error;
            }
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  it('never buffers more than one header plus one maximal payload, however the bytes arrive', () => {
    const maxPayloadBytes = 64;
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 200 }), { maxLength: 20 }), (chunks) => {
        const decoder = new FrameDecoder({ maxPayloadBytes });
        expect(decoder.maxBufferedBytes).toBe(HEADER_SIZE + maxPayloadBytes);
        try {
          for (const chunk of chunks) {
            decoder.push(Buffer.from(chunk));
            expect(decoder.bufferedBytes).toBeLessThanOrEqual(decoder.maxBufferedBytes);
          }
        } catch (error) {
          // A BufferLimitError would mean the bound broke; only header errors are allowed.
          expect(error).not.toBeInstanceOf(BufferLimitError);
          expect(error instanceof FrameTooLargeError || error instanceof UnknownPacketTypeError).toBe(true);
        }
      }),
      { numRuns: 300 },
    );
  });
});
