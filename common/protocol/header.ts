import { Buffer } from 'node:buffer';
import {
  ACK_OFFSET,
  HEADER_SIZE,
  LENGTH_OFFSET,
  SEQ_OFFSET,
  SESSION_OFFSET,
  TYPE_OFFSET,
  UINT32_MAX,
} from './constants.js';

/** The five fields of the 20-byte header (§1), decoded. Every field is an unsigned 32-bit integer. */
export interface PacketHeader {
  /** Packet type; the seed's `is_heartbeat`. Raw number: the decoder validates the range. */
  type: number;
  /** Session the packet belongs to; 0 is the link itself. The seed's `curr_sessionID`. */
  sessionId: number;
  /** Sequence number of a sequenced packet; 0 otherwise. The seed's `curr_seqN`. */
  seq: number;
  /** Cumulative ack: next seq the sender expects on this session. The seed's `curr_ackN`. */
  ack: number;
  /** Payload length in bytes. */
  length: number;
}

function assertUint32(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 0 || value > UINT32_MAX) {
    throw new RangeError(`header field ${name} must be an unsigned 32-bit integer, got ${value}`);
  }
}

/** Writes `header` into `target` at `offset` (big-endian, §1). */
export function writeHeader(target: Buffer, header: PacketHeader, offset = 0): void {
  assertUint32('type', header.type);
  assertUint32('sessionId', header.sessionId);
  assertUint32('seq', header.seq);
  assertUint32('ack', header.ack);
  assertUint32('length', header.length);
  target.writeUInt32BE(header.type, offset + TYPE_OFFSET);
  target.writeUInt32BE(header.sessionId, offset + SESSION_OFFSET);
  target.writeUInt32BE(header.seq, offset + SEQ_OFFSET);
  target.writeUInt32BE(header.ack, offset + ACK_OFFSET);
  target.writeUInt32BE(header.length, offset + LENGTH_OFFSET);
}

/** Encodes a header into a fresh 20-byte buffer. The payload is written separately, never copied. */
export function encodeHeader(header: PacketHeader): Buffer {
  const buffer = Buffer.allocUnsafe(HEADER_SIZE);
  writeHeader(buffer, header);
  return buffer;
}

/**
 * Encodes a header and its payload into one fresh buffer: a copy of the payload, worth it only
 * for small ones (one write call instead of a gathered pair).
 */
export function encodePacket(header: PacketHeader, payload: Buffer): Buffer {
  const buffer = Buffer.allocUnsafe(HEADER_SIZE + payload.length);
  writeHeader(buffer, header);
  payload.copy(buffer, HEADER_SIZE);
  return buffer;
}

/** Decodes the header at `offset`; the caller guarantees HEADER_SIZE bytes are there. */
export function decodeHeader(source: Buffer, offset = 0): PacketHeader {
  return {
    type: source.readUInt32BE(offset + TYPE_OFFSET),
    sessionId: source.readUInt32BE(offset + SESSION_OFFSET),
    seq: source.readUInt32BE(offset + SEQ_OFFSET),
    ack: source.readUInt32BE(offset + ACK_OFFSET),
    length: source.readUInt32BE(offset + LENGTH_OFFSET),
  };
}
