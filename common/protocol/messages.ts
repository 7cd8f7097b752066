import { HandshakeError } from '../errors.js';
import { CLIENT_ID_BYTES, FIELD_SIZE, MAX_REASON_BYTES, PROTOCOL_VERSION, WELCOME_FLAG_KNOWN_CLIENT } from './constants.js';

/** HELLO payload (§3): protocol version, then the client's random identity. */
export interface Hello {
  version: number;
  clientId: Buffer;
}

/** WELCOME payload (§3): protocol version, then flags. */
export interface Welcome {
  version: number;
  /** The server still held sessions for this client id: a resume rather than a fresh start. */
  knownClient: boolean;
}

export const HELLO_PAYLOAD_BYTES = FIELD_SIZE + CLIENT_ID_BYTES;
export const WELCOME_PAYLOAD_BYTES = FIELD_SIZE + FIELD_SIZE;

export function encodeHello(clientId: Buffer): Buffer {
  if (clientId.length !== CLIENT_ID_BYTES) throw new RangeError(`client id must be ${CLIENT_ID_BYTES} bytes`);
  const payload = Buffer.allocUnsafe(HELLO_PAYLOAD_BYTES);
  payload.writeUInt32BE(PROTOCOL_VERSION, 0);
  clientId.copy(payload, FIELD_SIZE);
  return payload;
}

export function decodeHello(payload: Buffer): Hello {
  if (payload.length !== HELLO_PAYLOAD_BYTES) {
    throw new HandshakeError(`HELLO payload must be ${HELLO_PAYLOAD_BYTES} bytes, got ${payload.length}`);
  }
  const version = payload.readUInt32BE(0);
  if (version !== PROTOCOL_VERSION) throw new HandshakeError(`unsupported protocol version ${version}`);
  // Copy: the payload may be a view into a socket chunk, and the id outlives it.
  return { version, clientId: Buffer.from(payload.subarray(FIELD_SIZE)) };
}

export function encodeWelcome(knownClient: boolean): Buffer {
  const payload = Buffer.allocUnsafe(WELCOME_PAYLOAD_BYTES);
  payload.writeUInt32BE(PROTOCOL_VERSION, 0);
  payload.writeUInt32BE(knownClient ? WELCOME_FLAG_KNOWN_CLIENT : 0, FIELD_SIZE);
  return payload;
}

export function decodeWelcome(payload: Buffer): Welcome {
  if (payload.length !== WELCOME_PAYLOAD_BYTES) {
    throw new HandshakeError(`WELCOME payload must be ${WELCOME_PAYLOAD_BYTES} bytes, got ${payload.length}`);
  }
  const version = payload.readUInt32BE(0);
  if (version !== PROTOCOL_VERSION) throw new HandshakeError(`unsupported protocol version ${version}`);
  const flags = payload.readUInt32BE(FIELD_SIZE);
  return { version, knownClient: (flags & WELCOME_FLAG_KNOWN_CLIENT) !== 0 };
}

/** RESET and GOAWAY payload: a UTF-8 reason, cut to MAX_REASON_BYTES on a character boundary. */
export function encodeReason(reason: string): Buffer {
  const bytes = Buffer.from(reason, 'utf8');
  if (bytes.length <= MAX_REASON_BYTES) return bytes;
  let end = MAX_REASON_BYTES;
  // Step back over UTF-8 continuation bytes (10xxxxxx) so that no character is cut in half.
  while (end > 0 && ((bytes[end] as number) & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}

export function decodeReason(payload: Buffer): string {
  return payload.subarray(0, MAX_REASON_BYTES).toString('utf8');
}
