import { Buffer } from 'node:buffer';
import { HandshakeError, ProtocolError } from '../support/errors.js';
import {
  CLIENT_ID_BYTES,
  FIELD_SIZE,
  MAX_REASON_BYTES,
  PROTOCOL_VERSION,
  RESUME_TOKEN_BYTES,
  WELCOME_FLAG_KNOWN_CLIENT,
  WELCOME_FLAG_REMOTE_FORWARDS,
} from './constants.js';

/** HELLO payload (§3): protocol version, the client's random identity, its resume token. */
export interface Hello {
  version: number;
  clientId: Buffer;
  resumeToken: Buffer;
}

/** WELCOME payload (§3): protocol version, then flags. */
export interface Welcome {
  version: number;
  /** The server still held sessions for this client id: a resume rather than a fresh start. */
  knownClient: boolean;
  /** The server takes LISTEN (§4.12). */
  remoteForwards: boolean;
}

export const HELLO_PAYLOAD_BYTES = FIELD_SIZE + CLIENT_ID_BYTES + RESUME_TOKEN_BYTES;
export const WELCOME_PAYLOAD_BYTES = FIELD_SIZE + FIELD_SIZE;

export function encodeHello(clientId: Buffer, resumeToken: Buffer): Buffer {
  if (clientId.length !== CLIENT_ID_BYTES) throw new RangeError(`client id must be ${CLIENT_ID_BYTES} bytes`);
  if (resumeToken.length !== RESUME_TOKEN_BYTES) throw new RangeError(`resume token must be ${RESUME_TOKEN_BYTES} bytes`);
  const payload = Buffer.allocUnsafe(HELLO_PAYLOAD_BYTES);
  payload.writeUInt32BE(PROTOCOL_VERSION, 0);
  clientId.copy(payload, FIELD_SIZE);
  resumeToken.copy(payload, FIELD_SIZE + CLIENT_ID_BYTES);
  return payload;
}

export function decodeHello(payload: Buffer): Hello {
  if (payload.length !== HELLO_PAYLOAD_BYTES) {
    throw new HandshakeError(`HELLO payload must be ${HELLO_PAYLOAD_BYTES} bytes, got ${payload.length}`);
  }
  const version = payload.readUInt32BE(0);
  if (version !== PROTOCOL_VERSION) throw new HandshakeError(`unsupported protocol version ${version}`);
  // Copy: the payload may be a view into a socket chunk, and the id and token outlive it.
  const tokenOffset = FIELD_SIZE + CLIENT_ID_BYTES;
  return {
    version,
    clientId: Buffer.from(payload.subarray(FIELD_SIZE, tokenOffset)),
    resumeToken: Buffer.from(payload.subarray(tokenOffset)),
  };
}

export function encodeWelcome(knownClient: boolean, remoteForwards = true): Buffer {
  const payload = Buffer.allocUnsafe(WELCOME_PAYLOAD_BYTES);
  payload.writeUInt32BE(PROTOCOL_VERSION, 0);
  payload.writeUInt32BE((knownClient ? WELCOME_FLAG_KNOWN_CLIENT : 0) | (remoteForwards ? WELCOME_FLAG_REMOTE_FORWARDS : 0), FIELD_SIZE);
  return payload;
}

export function decodeWelcome(payload: Buffer): Welcome {
  if (payload.length !== WELCOME_PAYLOAD_BYTES) {
    throw new HandshakeError(`WELCOME payload must be ${WELCOME_PAYLOAD_BYTES} bytes, got ${payload.length}`);
  }
  const version = payload.readUInt32BE(0);
  if (version !== PROTOCOL_VERSION) throw new HandshakeError(`unsupported protocol version ${version}`);
  const flags = payload.readUInt32BE(FIELD_SIZE);
  return { version, knownClient: (flags & WELCOME_FLAG_KNOWN_CLIENT) !== 0, remoteForwards: (flags & WELCOME_FLAG_REMOTE_FORWARDS) !== 0 };
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

/** Longest target an OPEN may name ("host:port"), in bytes. */
export const MAX_OPEN_TARGET_BYTES = 261; // a 255-byte DNS name, a colon, five digits

/** OPEN payload (§4.2): empty for the server's default target, else the UTF-8 "host:port" asked for. */
export function encodeOpenTarget(target: string): Buffer {
  const bytes = Buffer.from(target, 'utf8');
  if (bytes.length > MAX_OPEN_TARGET_BYTES) throw new RangeError(`target must be at most ${MAX_OPEN_TARGET_BYTES} bytes`);
  return bytes;
}

export function decodeOpenTarget(payload: Buffer): string | null {
  if (payload.length === 0) return null;
  if (payload.length > MAX_OPEN_TARGET_BYTES) throw new ProtocolError(`OPEN target of ${payload.length} bytes`);
  return payload.toString('utf8');
}

/** A server-opened OPEN (§4.12): which of the client's remote forwards, and who connected to it. */
export interface RemoteOpen {
  forward: number;
  /** The accepted connection's peer, "host:port", for the client's logs. */
  origin: string;
}

/** Longest origin a server-opened OPEN carries. */
const MAX_ORIGIN_BYTES = 64;

export function encodeRemoteOpen(open: RemoteOpen): Buffer {
  const origin = Buffer.from(open.origin, 'utf8').subarray(0, MAX_ORIGIN_BYTES);
  const payload = Buffer.allocUnsafe(FIELD_SIZE + origin.length);
  payload.writeUInt32BE(open.forward, 0);
  origin.copy(payload, FIELD_SIZE);
  return payload;
}

export function decodeRemoteOpen(payload: Buffer): RemoteOpen {
  if (payload.length < FIELD_SIZE || payload.length > FIELD_SIZE + MAX_ORIGIN_BYTES) {
    throw new ProtocolError(`server-opened OPEN payload of ${payload.length} bytes`);
  }
  return { forward: payload.readUInt32BE(0), origin: payload.subarray(FIELD_SIZE).toString('utf8') };
}
