/**
 * Fuzzing of FrameDecoder: random bytes and mutated valid streams, pushed in random chunkings,
 * with the default and with small payload limits, and with the limit changed between pushes.
 * Every push is checked against a naive reference decoder (fuzz-support.ts): the same frames,
 * the same bytes held back, or the same error, which must be one of our three decoder errors.
 * Run counts and seed: see fuzz-support.ts (FUZZ_RUNS, FUZZ_SEED).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EternalError } from '../../common/support/errors.js';
import { HEADER_SIZE, MAX_PAYLOAD_BYTES, PACKET_TYPE_LIMIT } from '../../common/protocol/constants.js';
import { FrameDecoder } from '../../common/protocol/frame-decoder.js';
import { HELLO_PAYLOAD_BYTES } from '../../common/protocol/messages.js';
import {
  assertEternalError,
  chunk,
  chunkingArb,
  encodeStream,
  expectBoundedMemory,
  frameArb,
  fuzzParameters,
  mutate,
  mutationArb,
  recordPush,
  ReferenceDecoder,
  runsFor,
  sampleMemory,
  timeoutFor,
  type PushOutcome,
} from './fuzz-support.js';

const DECODER_CODES: ReadonlySet<string> = new Set(['ETCP_ERR_FRAME_TOO_LARGE', 'ETCP_ERR_UNKNOWN_PACKET_TYPE', 'ETCP_ERR_BUFFER_LIMIT']);

/** null: a decoder built without options (the default limit). */
const limitArb = fc.oneof(
  { weight: 3, arbitrary: fc.constant(null) },
  { weight: 3, arbitrary: fc.constantFrom(0, 1, 19, 20, HELLO_PAYLOAD_BYTES, 100, 1024) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: MAX_PAYLOAD_BYTES }) },
);

function newDecoders(limit: number | null): { decoder: FrameDecoder; reference: ReferenceDecoder } {
  return limit === null
    ? { decoder: new FrameDecoder(), reference: new ReferenceDecoder() }
    : { decoder: new FrameDecoder({ maxPayloadBytes: limit }), reference: new ReferenceDecoder(limit) };
}

function sameOutcome(a: PushOutcome, b: PushOutcome): boolean {
  if (a.ok !== b.ok) return false;
  if (a.ok && b.ok) {
    return a.bufferedBytes === b.bufferedBytes && a.frames.length === b.frames.length && a.frames.every((frame, i) => frame === b.frames[i]);
  }
  return !a.ok && !b.ok && a.name === b.name && a.code === b.code && a.message === b.message;
}

/**
 * Pushes `pieces` one by one into both decoders (calling `between` before each push after the
 * first), checks that they agree on every push and that the decoder never holds more than its
 * bound, and stops at the first error. Returns the number of frames decoded.
 */
function feed(
  decoder: FrameDecoder,
  reference: ReferenceDecoder,
  pieces: readonly Buffer[],
  between: (index: number, framesSoFar: number) => void = () => {},
): number {
  let frames = 0;
  for (let index = 0; index < pieces.length; index++) {
    if (index > 0) between(index, frames);
    const piece = pieces[index] as Buffer;
    let actual: PushOutcome;
    try {
      actual = recordPush(decoder, piece);
    } catch (error) {
      // recordPush lets anything but an EternalError through: report it as such.
      assertEternalError(error, DECODER_CODES);
      throw error;
    }
    const expected = recordPush(reference, piece);
    if (!sameOutcome(actual, expected)) {
      expect({ push: index, of: pieces.length, outcome: actual }).toEqual({ push: index, of: pieces.length, outcome: expected });
    }
    if (!actual.ok) {
      expect(DECODER_CODES.has(actual.code)).toBe(true);
      return frames;
    }
    if (decoder.bufferedBytes > decoder.maxBufferedBytes) {
      expect.fail(`decoder holds ${decoder.bufferedBytes} bytes, over its bound of ${decoder.maxBufferedBytes}`);
    }
    frames += actual.frames.length;
  }
  return frames;
}

/** Random bytes, often with most bytes zeroed so that headers have small types and lengths. */
const randomBytesArb = fc
  .record({
    bytes: fc.oneof({ weight: 4, arbitrary: fc.uint8Array({ maxLength: 400 }) }, { weight: 1, arbitrary: fc.uint8Array({ maxLength: 3000 }) }),
    sparse: fc.constantFrom(false, true, true),
  })
  .map(({ bytes, sparse }) => {
    const buffer = Buffer.from(bytes);
    // Sparse: keep the low nibble of bytes whose top bit is set, zero the others.
    if (sparse) for (let i = 0; i < buffer.length; i++) buffer[i] = (buffer[i] as number) & 0x80 ? (buffer[i] as number) & 0x0f : 0;
    return buffer;
  });

describe('FrameDecoder fuzz', () => {
  const randomRuns = runsFor('decoderRandomBytes');
  it(`random bytes in random chunks: the reference decoder's frames or one of our errors (${randomRuns} inputs)`, () => {
    const before = sampleMemory();
    fc.assert(
      fc.property(randomBytesArb, chunkingArb, limitArb, (bytes, chunking, limit) => {
        const { decoder, reference } = newDecoders(limit);
        feed(decoder, reference, chunk(bytes, chunking));
      }),
      fuzzParameters('decoderRandomBytes'),
    );
    expectBoundedMemory(before);
  }, timeoutFor(randomRuns, 0.2));

  const mutatedRuns = runsFor('decoderMutatedStreams');
  it(`mutated valid streams (bit flips, truncation, duplication, splices, extreme header fields) in random chunks (${mutatedRuns} inputs)`, () => {
    const before = sampleMemory();
    let decodedFrames = 0;
    fc.assert(
      fc.property(
        fc.array(frameArb, { maxLength: 8 }),
        fc.array(mutationArb, { maxLength: 4 }),
        chunkingArb,
        limitArb,
        (frames, mutations, chunking, limit) => {
          const bytes = mutate(encodeStream(frames), mutations);
          const { decoder, reference } = newDecoders(limit);
          decodedFrames += feed(decoder, reference, chunk(bytes, chunking));
        },
      ),
      fuzzParameters('decoderMutatedStreams'),
    );
    // The generators reach past the first header: frames come out, not only errors.
    expect(decodedFrames).toBeGreaterThan(mutatedRuns);
    expectBoundedMemory(before);
  }, timeoutFor(mutatedRuns, 0.4));

  const limitRuns = runsFor('decoderChangingLimit');
  it(`the limit changed between pushes, as the server raises it after HELLO (${limitRuns} inputs)`, () => {
    const before = sampleMemory();
    fc.assert(
      fc.property(
        fc.array(frameArb, { maxLength: 6 }),
        fc.array(mutationArb, { maxLength: 2 }),
        chunkingArb,
        fc.oneof(
          // The server's pattern: HELLO-sized until the first frame, then the protocol maximum.
          fc.constant({ kind: 'server' as const }),
          fc.record({
            kind: fc.constant('arbitrary' as const),
            first: fc.constantFrom(0, 20, HELLO_PAYLOAD_BYTES, 1024, MAX_PAYLOAD_BYTES),
            changes: fc.array(fc.record({ push: fc.nat({ max: 40 }), limit: fc.constantFrom(0, 1, 20, HELLO_PAYLOAD_BYTES, 1000, MAX_PAYLOAD_BYTES) }), {
              maxLength: 4,
            }),
          }),
        ),
        (frames, mutations, chunking, plan) => {
          const bytes = mutate(encodeStream(frames), mutations);
          const first = plan.kind === 'server' ? HELLO_PAYLOAD_BYTES : plan.first;
          const { decoder, reference } = newDecoders(first);
          feed(decoder, reference, chunk(bytes, chunking), (index, framesSoFar) => {
            let limit: number | null = null;
            if (plan.kind === 'server') {
              if (framesSoFar > 0) limit = MAX_PAYLOAD_BYTES;
            } else {
              for (const change of plan.changes) if (change.push === index) limit = change.limit;
            }
            if (limit === null) return;
            decoder.maxPayloadBytes = limit;
            reference.maxPayloadBytes = limit;
          });
        },
      ),
      fuzzParameters('decoderChangingLimit'),
    );
    expectBoundedMemory(before);
  }, timeoutFor(limitRuns, 0.4));

  const largeRuns = runsFor('decoderLargeFrames');
  it(`frames at and around the 64 KiB limit hold at most a header and a maximal payload (${largeRuns} inputs)`, () => {
    const before = sampleMemory();
    const near = fc.constantFrom(0, 1, MAX_PAYLOAD_BYTES - HEADER_SIZE, MAX_PAYLOAD_BYTES - 1, MAX_PAYLOAD_BYTES, MAX_PAYLOAD_BYTES + 1);
    fc.assert(
      fc.property(
        fc.array(fc.record({ type: fc.nat({ max: 10 }), length: near }), { minLength: 1, maxLength: 4 }),
        fc.array(mutationArb, { maxLength: 2 }),
        fc.oneof(
          chunkingArb,
          fc.record({ kind: fc.constant('fixed' as const), size: fc.constantFrom(1, 4095, 4096, 65_536, 65_555, 65_556, 65_557) }),
        ),
        (specs, mutations, chunking) => {
          const frames = specs.map(({ type, length }) => ({
            header: { type, sessionId: 1, seq: 2, ack: 3 },
            payload: Buffer.alloc(length, type),
          }));
          const bytes = mutate(encodeStream(frames), mutations);
          const { decoder, reference } = newDecoders(null);
          feed(decoder, reference, chunk(bytes, chunking));
        },
      ),
      fuzzParameters('decoderLargeFrames'),
    );
    expectBoundedMemory(before);
  }, timeoutFor(largeRuns, 2));

  it('header fields at their extremes: the error comes as soon as the header is complete, with nothing buffered', () => {
    for (const length of [0xffff_ffff, 0x8000_0000, MAX_PAYLOAD_BYTES + 1]) {
      for (const limit of [null, 0, HELLO_PAYLOAD_BYTES]) {
        const header = Buffer.alloc(HEADER_SIZE);
        header.writeUInt32BE(0, 0);
        header.writeUInt32BE(length, 16);
        const decoder = limit === null ? new FrameDecoder() : new FrameDecoder({ maxPayloadBytes: limit });
        expect(decoder.push(header.subarray(0, HEADER_SIZE - 1))).toEqual([]);
        let caught: unknown;
        try {
          decoder.push(header.subarray(HEADER_SIZE - 1));
        } catch (error) {
          caught = error;
        }
        const error = assertEternalError(caught, DECODER_CODES);
        expect(error).toBeInstanceOf(EternalError);
        expect(error.code).toBe('ETCP_ERR_FRAME_TOO_LARGE');
        expect(error.message).toBe(`frame payload of ${length} bytes exceeds the maximum of ${limit ?? MAX_PAYLOAD_BYTES}`);
        expect(decoder.bufferedBytes).toBe(0);
      }
    }
    for (const type of [0xffff_ffff, 0x8000_0000, PACKET_TYPE_LIMIT]) {
      const header = Buffer.alloc(HEADER_SIZE);
      header.writeUInt32BE(type, 0);
      header.writeUInt32BE(0xffff_ffff, 16);
      let caught: unknown;
      try {
        new FrameDecoder().push(header);
      } catch (error) {
        caught = error;
      }
      // The type is checked first.
      expect(assertEternalError(caught, DECODER_CODES).message).toBe(`unknown packet type ${type}`);
    }
  });
});
