import { Buffer } from 'node:buffer';
import { BufferLimitError, FrameTooLargeError, UnknownPacketTypeError } from '../support/errors.js';
import { HEADER_SIZE, MAX_PAYLOAD_BYTES, PACKET_TYPE_LIMIT } from './constants.js';
import { decodeHeader, type PacketHeader } from './header.js';

/** One whole packet off the wire. Its buffers may be views into received chunks: do not mutate them. */
export interface Frame {
  readonly header: PacketHeader;
  /**
   * The payload as received, never copied: one slice of a chunk, several when it spanned chunks,
   * none when empty. DATA is delivered from these, so a frame split by TCP costs no copy.
   */
  readonly parts: readonly Buffer[];
  /** The payload in one buffer, for the control payloads that are parsed; joined on first use. */
  readonly payload: Buffer;
}

export interface FrameDecoderOptions {
  /** Largest payload accepted; a header announcing more is rejected before buffering (§1). */
  maxPayloadBytes?: number;
}

const EMPTY = Buffer.alloc(0);
const NO_PARTS: readonly Buffer[] = [];

class DecodedFrame implements Frame {
  #payload: Buffer | null;

  constructor(
    readonly header: PacketHeader,
    readonly parts: readonly Buffer[],
  ) {
    this.#payload = parts.length === 0 ? EMPTY : parts.length === 1 ? (parts[0] as Buffer) : null;
  }

  get payload(): Buffer {
    this.#payload ??= Buffer.concat(this.parts as Buffer[]);
    return this.#payload;
  }
}

/**
 * Streaming decoder: bytes in, whole frames out. Handles partial headers, payloads split across
 * chunks and many frames in one chunk. It keeps the received chunks in a list and hands a payload
 * on as slices of them, so it copies only a header that straddles two chunks (20 bytes). After it
 * throws, the stream is out of sync and the decoder must be discarded together with its link.
 */
export class FrameDecoder {
  #maxPayloadBytes: number;
  readonly #chunks: Buffer[] = [];
  /** Bytes of the first chunk already taken: it is sliced when handed on, not on every take. */
  #offset = 0;
  #bufferedBytes = 0;
  /** Header of the frame whose payload is being awaited, or null while awaiting a header. */
  #pendingHeader: PacketHeader | null = null;

  constructor(options: FrameDecoderOptions = {}) {
    this.#maxPayloadBytes = options.maxPayloadBytes ?? MAX_PAYLOAD_BYTES;
  }

  /** Bytes received but not yet returned as part of a frame (at most one incomplete frame). */
  get bufferedBytes(): number {
    return this.#bufferedBytes;
  }

  get maxPayloadBytes(): number {
    return this.#maxPayloadBytes;
  }

  /** Changes the largest payload accepted from the next header on (e.g. once a peer is authenticated). */
  set maxPayloadBytes(bytes: number) {
    this.#maxPayloadBytes = bytes;
  }

  /** The most this decoder ever holds between calls: one header plus one maximal payload. */
  get maxBufferedBytes(): number {
    return HEADER_SIZE + this.#maxPayloadBytes;
  }

  /**
   * Adds a chunk and returns every frame it completes, in order. Throws FrameTooLargeError or
   * UnknownPacketTypeError as soon as a bad header is complete.
   */
  push(chunk: Buffer): Frame[] {
    this.append(chunk);
    const frames: Frame[] = [];
    for (let frame = this.next(); frame !== null; frame = this.next()) frames.push(frame);
    return frames;
  }

  /** Adds a chunk; take the frames it completes with next(). */
  append(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#bufferedBytes += chunk.length;
  }

  /**
   * The next whole frame, or null until more bytes arrive. Frames are taken one at a time so that
   * a limit changed after one frame (maxPayloadBytes, once a peer is authenticated) applies to the
   * next, however the bytes were split into chunks.
   */
  next(): Frame | null {
    if (this.#pendingHeader === null) {
      if (this.#bufferedBytes < HEADER_SIZE) return this.#drained();
      const header = this.#takeHeader();
      // §2: a type outside the defined range cannot be skipped safely; §1: nor can an oversize length.
      if (header.type >= PACKET_TYPE_LIMIT) throw new UnknownPacketTypeError(header.type);
      if (header.length > this.#maxPayloadBytes) throw new FrameTooLargeError(header.length, this.#maxPayloadBytes);
      this.#pendingHeader = header;
    }
    const header: PacketHeader = this.#pendingHeader;
    if (this.#bufferedBytes < header.length) return this.#drained();
    const parts = header.length === 0 ? NO_PARTS : this.#consumeParts(header.length);
    this.#pendingHeader = null;
    return new DecodedFrame(header, parts);
  }

  /** No whole frame is left: what remains must fit the bound. */
  #drained(): null {
    // Holds by construction; checked so that a future change cannot silently make it unbounded.
    if (this.#bufferedBytes > this.maxBufferedBytes) {
      throw new BufferLimitError(this.#bufferedBytes, this.maxBufferedBytes);
    }
    return null;
  }

  /** Removes the next `n` bytes (0 < n <= bufferedBytes) and returns them as slices, uncopied. */
  #consumeParts(n: number): Buffer[] {
    this.#bufferedBytes -= n;
    const parts: Buffer[] = [];
    let needed = n;
    while (needed > 0) {
      const chunk = this.#chunks[0] as Buffer;
      const available = chunk.length - this.#offset;
      if (available <= needed) {
        parts.push(this.#offset === 0 ? chunk : chunk.subarray(this.#offset));
        this.#chunks.shift();
        this.#offset = 0;
        needed -= available;
      } else {
        parts.push(chunk.subarray(this.#offset, this.#offset + needed));
        this.#offset += needed;
        needed = 0;
      }
    }
    return parts;
  }

  /** Removes and decodes the next header (bufferedBytes >= HEADER_SIZE); copies it only across chunks. */
  #takeHeader(): PacketHeader {
    const first = this.#chunks[0] as Buffer;
    if (first.length - this.#offset < HEADER_SIZE) return decodeHeader(Buffer.concat(this.#consumeParts(HEADER_SIZE), HEADER_SIZE));
    const header = decodeHeader(first, this.#offset);
    this.#bufferedBytes -= HEADER_SIZE;
    this.#offset += HEADER_SIZE;
    if (this.#offset === first.length) {
      this.#chunks.shift();
      this.#offset = 0;
    }
    return header;
  }
}
