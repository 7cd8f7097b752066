/**
 * Shared pieces of the fuzz suite (test/fuzz/*.fuzz.test.ts): run counts and seed, generators of
 * valid and mutated link streams, chunkings, a naive reference decoder, error and memory checks.
 *
 * Run counts: FUZZ_RUNS is the number of generated inputs over the whole suite (every file); each
 * property takes a fixed share of it. FUZZ_SEED fixes the fast-check seed (each property adds its
 * own offset, so that they do not all draw the same values). A failure prints the seed and path
 * to replay it: FUZZ_SEED=<seed> npx vitest run test/fuzz.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import { expect } from 'vitest';
import { BufferLimitError, EternalError, FrameTooLargeError, UnknownPacketTypeError, type EternalErrorCode } from '../../common/support/errors.js';
import { HEADER_SIZE, MAX_PAYLOAD_BYTES, PACKET_TYPE_LIMIT, UINT32_MAX } from '../../common/protocol/constants.js';
import { decodeHeader, encodeHeader, type PacketHeader } from '../../common/protocol/header.js';
import { splitAt } from '../helpers/split.js';

// ── Run counts and seed ─────────────────────────────────────────────────────

function envInteger(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value)) throw new Error(`${name} must be an integer, got ${JSON.stringify(raw)}`);
  return value;
}

/** Inputs per CI run over the whole fuzz suite, unless FUZZ_RUNS says otherwise. */
export const DEFAULT_FUZZ_RUNS = 120_000;
export const FUZZ_RUNS = Math.max(1, envInteger('FUZZ_RUNS', DEFAULT_FUZZ_RUNS));
export const FUZZ_SEED = envInteger('FUZZ_SEED', 0x5eed_7c9);

/**
 * Each property's share of FUZZ_RUNS, in inputs. The shares add up to 1. A whole-connection run
 * costs about a hundred decoder runs, which is why it gets a small share.
 */
const SHARES = {
  decoderRandomBytes: 0.17,
  decoderMutatedStreams: 0.25,
  decoderChangingLimit: 0.1,
  decoderLargeFrames: 0.05,
  helloPayloads: 0.25,
  serverConnections: 0.1,
  // The PROXY header codec (proxy-v2.fuzz.test.ts): a header is tiny and decodes in microseconds.
  proxyHeaderRandomBytes: 0.03,
  proxyHeaderMutated: 0.03,
  proxyHeaderRoundTrip: 0.02,
} as const;

export type FuzzProperty = keyof typeof SHARES;

/** Inputs for one property at the current FUZZ_RUNS. */
export function runsFor(property: FuzzProperty): number {
  return Math.max(1, Math.round(FUZZ_RUNS * SHARES[property]));
}

/** fast-check parameters of one property: its run count and a seed of its own. */
export function fuzzParameters(property: FuzzProperty, runs = runsFor(property)): fc.Parameters<unknown> {
  const offset = Object.keys(SHARES).indexOf(property);
  return { seed: (FUZZ_SEED + offset * 7919) | 0, numRuns: runs };
}

/** A test timeout for `runs` inputs of about `msPerRun` each, with room for a slow machine and shrinking. */
export function timeoutFor(runs: number, msPerRun: number): number {
  return Math.max(30_000, Math.ceil(runs * msPerRun * 5) + 10_000);
}

// ── Valid streams ───────────────────────────────────────────────────────────

/** Random bytes to cut payloads from, so that large payloads cost no generation time. */
const PAYLOAD_SOURCE = (() => {
  const bytes = Buffer.allocUnsafe(2 * MAX_PAYLOAD_BYTES + 64);
  let state = 0x2545f491;
  for (let i = 0; i < bytes.length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    bytes[i] = state & 0xff;
  }
  return bytes;
})();

export const uint32 = fc.integer({ min: 0, max: UINT32_MAX });

/** Header values at and around every boundary the receivers test. */
export const EXTREME_VALUES: readonly number[] = [
  0,
  1,
  2,
  PACKET_TYPE_LIMIT - 1,
  PACKET_TYPE_LIMIT,
  PACKET_TYPE_LIMIT + 1,
  19,
  20,
  51,
  52,
  53,
  0xff,
  0x100,
  MAX_PAYLOAD_BYTES - 1,
  MAX_PAYLOAD_BYTES,
  MAX_PAYLOAD_BYTES + 1,
  0x7fff_ffff,
  0x8000_0000,
  0x8000_0001,
  0xffff_fffe,
  0xffff_ffff,
];

export const extremeUint32 = fc.oneof(fc.constantFrom(...EXTREME_VALUES), uint32);

export interface FrameSpec {
  header: Omit<PacketHeader, 'length'>;
  payload: Buffer;
}

/** A payload: mostly small, sometimes up to (and just over) the protocol maximum. */
const payloadArb: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 4, arbitrary: fc.uint8Array({ maxLength: 64 }).map((bytes) => Buffer.from(bytes)) },
  { weight: 2, arbitrary: fc.constant(Buffer.alloc(0)) },
  {
    weight: 1,
    arbitrary: fc
      .record({
        offset: fc.nat({ max: 63 }),
        length: fc.oneof(
          fc.integer({ min: 0, max: 600 }),
          fc.integer({ min: 0, max: MAX_PAYLOAD_BYTES }),
          fc.constantFrom(MAX_PAYLOAD_BYTES - 1, MAX_PAYLOAD_BYTES, MAX_PAYLOAD_BYTES + 1),
        ),
      })
      .map(({ offset, length }) => PAYLOAD_SOURCE.subarray(offset, offset + length)),
  },
);

/** Session ids, seqs and acks: small numbers (which collide, and so reach sessions), or any. */
const fieldArb = fc.oneof(fc.integer({ min: 0, max: 4 }), extremeUint32);

export const frameArb: fc.Arbitrary<FrameSpec> = fc.record({
  header: fc.record({
    type: fc.integer({ min: 0, max: PACKET_TYPE_LIMIT - 1 }),
    sessionId: fieldArb,
    seq: fieldArb,
    ack: fieldArb,
  }),
  payload: payloadArb,
});

export function encodeFrame(frame: FrameSpec): Buffer {
  return Buffer.concat([encodeHeader({ ...frame.header, length: frame.payload.length }), frame.payload]);
}

/** Encoded frames, and the offset at which each starts. */
export interface Stream {
  bytes: Buffer;
  frameOffsets: number[];
}

export function encodeStream(frames: readonly FrameSpec[]): Stream {
  const frameOffsets: number[] = [];
  const parts: Buffer[] = [];
  let offset = 0;
  for (const frame of frames) {
    const bytes = encodeFrame(frame);
    frameOffsets.push(offset);
    parts.push(bytes);
    offset += bytes.length;
  }
  return { bytes: Buffer.concat(parts), frameOffsets };
}

// ── Mutations ───────────────────────────────────────────────────────────────

/**
 * One change to a stream. Positions are any natural number, taken modulo the stream's length
 * when applied, so that a mutation does not depend on the stream it is applied to.
 */
export type Mutation =
  | { op: 'flip'; at: number; bit: number }
  | { op: 'set'; at: number; value: number }
  | { op: 'truncate'; keep: number }
  | { op: 'duplicate'; from: number; length: number; to: number }
  | { op: 'delete'; from: number; length: number }
  | { op: 'insert'; at: number; bytes: Buffer }
  | { op: 'splice'; frame: number; spliced: FrameSpec }
  | { op: 'field'; frame: number; field: number; value: number };

const position = fc.nat({ max: 1 << 20 });

export const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('flip' as const), at: position, bit: fc.nat({ max: 7 }) }),
  fc.record({ op: fc.constant('set' as const), at: position, value: fc.constantFrom(0x00, 0x01, 0x0a, 0x0b, 0x7f, 0x80, 0xff) }),
  fc.record({ op: fc.constant('truncate' as const), keep: position }),
  fc.record({ op: fc.constant('duplicate' as const), from: position, length: fc.integer({ min: 1, max: 200 }), to: position }),
  fc.record({ op: fc.constant('delete' as const), from: position, length: fc.integer({ min: 1, max: 40 }) }),
  fc.record({ op: fc.constant('insert' as const), at: position, bytes: fc.uint8Array({ minLength: 1, maxLength: 24 }).map((b) => Buffer.from(b)) }),
  fc.record({ op: fc.constant('splice' as const), frame: position, spliced: frameArb }),
  fc.record({ op: fc.constant('field' as const), frame: position, field: fc.nat({ max: 4 }), value: extremeUint32 }),
);

/**
 * Applies `mutations` in order. Frame-aware ones ('splice' at a frame boundary, 'field' in a
 * frame's header) use the boundaries of the original stream, kept up to date as far as cheap.
 */
export function mutate(stream: Stream, mutations: readonly Mutation[]): Buffer {
  // A copy: in-place edits below must not reach the stream we were given.
  let bytes = Buffer.from(stream.bytes);
  const offsets = [...stream.frameOffsets];
  for (const mutation of mutations) {
    const length = bytes.length;
    switch (mutation.op) {
      case 'flip':
        if (length > 0) {
          const at = mutation.at % length;
          bytes[at] = (bytes[at] as number) ^ (1 << mutation.bit);
        }
        break;
      case 'set':
        if (length > 0) bytes[mutation.at % length] = mutation.value;
        break;
      case 'truncate':
        bytes = bytes.subarray(0, mutation.keep % (length + 1));
        break;
      case 'duplicate': {
        if (length === 0) break;
        const from = mutation.from % length;
        const piece = bytes.subarray(from, from + mutation.length);
        const to = mutation.to % (length + 1);
        bytes = Buffer.concat([bytes.subarray(0, to), piece, bytes.subarray(to)]);
        break;
      }
      case 'delete': {
        if (length === 0) break;
        const from = mutation.from % length;
        bytes = Buffer.concat([bytes.subarray(0, from), bytes.subarray(from + mutation.length)]);
        break;
      }
      case 'insert': {
        const at = mutation.at % (length + 1);
        bytes = Buffer.concat([bytes.subarray(0, at), mutation.bytes, bytes.subarray(at)]);
        break;
      }
      case 'splice': {
        // At a frame boundary (or the end), so that the result stays a stream of whole frames.
        const boundaries = [...offsets.filter((offset) => offset <= length), length];
        const at = boundaries[mutation.frame % boundaries.length] as number;
        const frame = encodeFrame(mutation.spliced);
        bytes = Buffer.concat([bytes.subarray(0, at), frame, bytes.subarray(at)]);
        const index = offsets.findIndex((offset) => offset >= at);
        const shifted = offsets.map((offset) => (offset >= at ? offset + frame.length : offset));
        shifted.splice(index === -1 ? shifted.length : index, 0, at);
        offsets.splice(0, offsets.length, ...shifted);
        break;
      }
      case 'field': {
        const candidates = offsets.filter((offset) => offset + HEADER_SIZE <= length);
        if (candidates.length === 0) break;
        const at = candidates[mutation.frame % candidates.length] as number;
        bytes.writeUInt32BE(mutation.value, at + mutation.field * 4);
        break;
      }
    }
  }
  return bytes;
}

// ── Chunkings ───────────────────────────────────────────────────────────────

/** How to cut a stream into pushes: whole, byte by byte, fixed size, or at random points. */
export type Chunking =
  | { kind: 'whole' }
  | { kind: 'bytes' }
  | { kind: 'fixed'; size: number }
  | { kind: 'cuts'; cuts: number[] };

export const chunkingArb: fc.Arbitrary<Chunking> = fc.oneof(
  { weight: 1, arbitrary: fc.constant({ kind: 'whole' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'bytes' as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('fixed' as const), size: fc.constantFrom(2, 3, 7, 19, 20, 21, 52, 72, 73, 1000) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('cuts' as const), cuts: fc.array(position, { maxLength: 12 }) }) },
);

/** At most MAX_PIECES pieces of `size` bytes, then the rest at once, so that the cost stays bounded. */
const MAX_PIECES = 4096;

function fixedPieces(bytes: Buffer, size: number): Buffer[] {
  const pieces: Buffer[] = [];
  let offset = 0;
  while (offset < bytes.length && pieces.length < MAX_PIECES) {
    pieces.push(bytes.subarray(offset, offset + size));
    offset += size;
  }
  if (offset < bytes.length) pieces.push(bytes.subarray(offset));
  return pieces;
}

/** The pushes for `bytes` (empty pieces included: an empty push must be harmless too). */
export function chunk(bytes: Buffer, chunking: Chunking): Buffer[] {
  switch (chunking.kind) {
    case 'whole':
      return [bytes];
    case 'bytes':
      return fixedPieces(bytes, 1);
    case 'fixed':
      return fixedPieces(bytes, chunking.size);
    case 'cuts':
      return splitAt(bytes, chunking.cuts.map((cut) => cut % (bytes.length + 1)));
  }
}

// ── Reference decoder ───────────────────────────────────────────────────────

export interface DecodedFrame {
  header: PacketHeader;
  payload: Buffer;
}

/**
 * What FrameDecoder must do, written the naive way: concatenate everything, then read headers
 * with plain offsets. Same contract: frames completed by a push, or the error of the first bad
 * header (type, then length, checked against the limit in force when the header completes), or
 * a BufferLimitError when more than a header and a maximal payload are left over.
 */
export class ReferenceDecoder {
  maxPayloadBytes: number;
  /** Pushed and not yet decoded; concatenated only once enough has arrived to decode something. */
  #parts: Buffer[] = [];
  #heldBytes = 0;
  #pending: PacketHeader | null = null;

  constructor(maxPayloadBytes = MAX_PAYLOAD_BYTES) {
    this.maxPayloadBytes = maxPayloadBytes;
  }

  get bufferedBytes(): number {
    return this.#heldBytes;
  }

  push(chunk: Buffer): DecodedFrame[] {
    this.#parts.push(chunk);
    this.#heldBytes += chunk.length;
    const frames: DecodedFrame[] = [];
    if (this.#heldBytes >= (this.#pending === null ? HEADER_SIZE : this.#pending.length)) {
      const held = Buffer.concat(this.#parts);
      let offset = 0;
      for (;;) {
        if (this.#pending === null) {
          if (held.length - offset < HEADER_SIZE) break;
          const header = decodeHeader(held, offset);
          offset += HEADER_SIZE;
          if (header.type >= PACKET_TYPE_LIMIT) throw new UnknownPacketTypeError(header.type);
          if (header.length > this.maxPayloadBytes) throw new FrameTooLargeError(header.length, this.maxPayloadBytes);
          this.#pending = header;
        }
        if (held.length - offset < this.#pending.length) break;
        frames.push({ header: this.#pending, payload: held.subarray(offset, offset + this.#pending.length) });
        offset += this.#pending.length;
        this.#pending = null;
      }
      this.#parts = offset < held.length ? [held.subarray(offset)] : [];
      this.#heldBytes = held.length - offset;
    }
    if (this.#heldBytes > HEADER_SIZE + this.maxPayloadBytes) {
      throw new BufferLimitError(this.#heldBytes, HEADER_SIZE + this.maxPayloadBytes);
    }
    return frames;
  }
}

/** Outcome of one push, in a form that compares by value. */
export type PushOutcome =
  | { ok: true; frames: string[]; bufferedBytes: number }
  | { ok: false; name: string; code: string; message: string };

function describeFrame(frame: DecodedFrame): string {
  const { type, sessionId, seq, ack, length } = frame.header;
  return `${type}/${sessionId}/${seq}/${ack}/${length}:${frame.payload.length}:${frame.payload.toString('base64')}`;
}

/** Runs one push and records what it did; anything but an EternalError escapes. */
export function recordPush(decoder: { push(chunk: Buffer): DecodedFrame[]; bufferedBytes: number }, chunk: Buffer): PushOutcome {
  try {
    const frames = decoder.push(chunk);
    return { ok: true, frames: frames.map(describeFrame), bufferedBytes: decoder.bufferedBytes };
  } catch (error) {
    if (!(error instanceof EternalError)) throw error;
    return { ok: false, name: error.name, code: error.code, message: error.message };
  }
}

// ── Errors ──────────────────────────────────────────────────────────────────

const ALL_CODES: ReadonlySet<string> = new Set<EternalErrorCode>([
  'ETCP_ERR_FRAME_TOO_LARGE',
  'ETCP_ERR_UNKNOWN_PACKET_TYPE',
  'ETCP_ERR_BUFFER_LIMIT',
  'ETCP_ERR_PROTOCOL',
  'ETCP_ERR_HANDSHAKE',
  'ETCP_ERR_AUTH',
  'ETCP_ERR_LIMIT',
  'ETCP_ERR_LINK_DEAD',
  'ETCP_ERR_LINK_CLOSED',
  'ETCP_ERR_SESSION_RESET',
  'ETCP_ERR_SESSION_LOST',
  'ETCP_ERR_QUEUE_FULL',
  'ETCP_ERR_CLOSED',
  'ETCP_ERR_CONFIG',
]);

/**
 * Checks that `error` is one of ours with one of `codes` (or any defined code), and returns it.
 * Cheap when it holds (no expect() call on the hot path); a failure says what was thrown.
 */
export function assertEternalError(error: unknown, codes: ReadonlySet<string> = ALL_CODES): EternalError {
  if (!(error instanceof EternalError)) {
    expect.fail(`expected an EternalError, got ${error instanceof Error ? `${error.name}: ${error.message}\n${error.stack ?? ''}` : String(error)}`);
  }
  if (!codes.has(error.code)) expect.fail(`unexpected code ${error.code} (${error.name}: ${error.message})`);
  if (error.name !== error.constructor.name) expect.fail(`error name ${error.name} is not its class ${error.constructor.name}`);
  return error;
}

// ── Memory ──────────────────────────────────────────────────────────────────

/** A full garbage collection, when V8 lets us have one (it does once --expose-gc is set at run time). */
const collectGarbage: (() => void) | null = (() => {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (typeof exposed === 'function') return exposed;
  try {
    setFlagsFromString('--expose-gc');
    const gc: unknown = runInNewContext('gc');
    return typeof gc === 'function' ? (gc as () => void) : null;
  } catch {
    return null;
  }
})();

export interface MemorySample {
  heapUsed: number;
  rss: number;
}

export function sampleMemory(): MemorySample {
  collectGarbage?.();
  const { heapUsed, rss } = process.memoryUsage();
  return { heapUsed, rss };
}

const MiB = 1024 * 1024;

/**
 * Memory must not grow without bound over a run: after a full GC the heap may have grown by at
 * most 64 MiB (what a leak of a few hundred bytes per input would exceed over a long run);
 * without a GC, the resident set by at most 200 MiB.
 */
export function expectBoundedMemory(before: MemorySample, after: MemorySample = sampleMemory()): void {
  if (collectGarbage !== null) {
    expect((after.heapUsed - before.heapUsed) / MiB, 'heap growth in MiB').toBeLessThan(64);
  }
  expect((after.rss - before.rss) / MiB, 'rss growth in MiB').toBeLessThan(200);
}
