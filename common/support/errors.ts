/**
 * Every error the engine raises on purpose. Callers test `code` or `instanceof`, never the message.
 */

export type EternalErrorCode =
  | 'ETCP_ERR_FRAME_TOO_LARGE'
  | 'ETCP_ERR_UNKNOWN_PACKET_TYPE'
  | 'ETCP_ERR_BUFFER_LIMIT'
  | 'ETCP_ERR_PROTOCOL'
  | 'ETCP_ERR_HANDSHAKE'
  | 'ETCP_ERR_AUTH'
  | 'ETCP_ERR_LIMIT'
  | 'ETCP_ERR_LINK_DEAD'
  | 'ETCP_ERR_ADDRESS_GONE'
  | 'ETCP_ERR_LINK_CLOSED'
  | 'ETCP_ERR_SESSION_RESET'
  | 'ETCP_ERR_SESSION_LOST'
  | 'ETCP_ERR_QUEUE_FULL'
  | 'ETCP_ERR_CLOSED'
  | 'ETCP_ERR_CONFIG';

export class EternalError extends Error {
  readonly code: EternalErrorCode;

  constructor(code: EternalErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A frame announced more payload than the protocol allows (PROTOCOL.md §1). */
export class FrameTooLargeError extends EternalError {
  constructor(
    readonly length: number,
    readonly maxPayloadBytes: number,
  ) {
    super('ETCP_ERR_FRAME_TOO_LARGE', `frame payload of ${length} bytes exceeds the maximum of ${maxPayloadBytes}`);
  }
}

/** A frame carried a packet type this protocol does not define (PROTOCOL.md §2). */
export class UnknownPacketTypeError extends EternalError {
  constructor(readonly packetType: number) {
    super('ETCP_ERR_UNKNOWN_PACKET_TYPE', `unknown packet type ${packetType}`);
  }
}

/** The decoder was asked to hold more bytes than its bound. */
export class BufferLimitError extends EternalError {
  constructor(readonly bufferedBytes: number, readonly limitBytes: number) {
    super('ETCP_ERR_BUFFER_LIMIT', `decoder would buffer ${bufferedBytes} bytes, over its limit of ${limitBytes}`);
  }
}

/** The peer broke a rule of the protocol (an ack for unsent data, a packet in the wrong state...). */
export class ProtocolError extends EternalError {
  constructor(message: string) {
    super('ETCP_ERR_PROTOCOL', message);
  }
}

/** The handshake did not complete: wrong first packet, bad version, timeout. */
export class HandshakeError extends EternalError {
  constructor(message: string) {
    super('ETCP_ERR_HANDSHAKE', message);
  }
}

/** The peer could not prove who it is: a wrong shared secret, or a resume with the wrong token. */
export class AuthenticationError extends EternalError {
  constructor(message: string, options?: ErrorOptions) {
    super('ETCP_ERR_AUTH', message, options);
  }
}

/** A configured limit was reached (clients, sessions per client, unauthenticated connections). */
export class LimitError extends EternalError {
  constructor(message: string) {
    super('ETCP_ERR_LIMIT', message);
  }
}

/** No packet arrived from the peer within the dead-link timeout. */
export class LinkDeadError extends EternalError {
  constructor(readonly silentMs: number) {
    super('ETCP_ERR_LINK_DEAD', `no packet from the peer for ${silentMs} ms`);
  }
}

/** The local address the link's socket is bound to left the host: nothing will arrive on it again. */
export class AddressGoneError extends EternalError {
  constructor(readonly address: string) {
    super('ETCP_ERR_ADDRESS_GONE', `local address ${address} is gone`);
  }
}

/** The link's socket closed or failed. */
export class LinkClosedError extends EternalError {
  constructor(message: string, options?: ErrorOptions) {
    super('ETCP_ERR_LINK_CLOSED', message, options);
  }
}

/** The peer reset the session (its application reset, or its target refused the connection). */
export class SessionResetError extends EternalError {
  constructor(readonly reason: string) {
    super('ETCP_ERR_SESSION_RESET', `session reset by peer: ${reason}`);
  }
}

/** The peer no longer holds the session's state (it restarted, or the resume window expired). */
export class SessionLostError extends EternalError {
  constructor(message: string) {
    super('ETCP_ERR_SESSION_LOST', message);
  }
}

/** The retransmit queue was asked to hold more than its byte bound. */
export class QueueFullError extends EternalError {
  constructor(readonly bytes: number, readonly maxBytes: number) {
    super('ETCP_ERR_QUEUE_FULL', `retransmit queue would hold ${bytes} bytes, over its bound of ${maxBytes}`);
  }
}

/** The endpoint or session was closed by its owner. */
export class ClosedError extends EternalError {
  constructor(message = 'closed') {
    super('ETCP_ERR_CLOSED', message);
  }
}

/** A configuration value is out of range. */
export class ConfigError extends EternalError {
  constructor(message: string) {
    super('ETCP_ERR_CONFIG', message);
  }
}
