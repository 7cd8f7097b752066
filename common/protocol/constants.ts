/**
 * Wire constants of the link protocol. The byte layout is described in docs/PROTOCOL.md;
 * section numbers cited in comments (§n) refer to that document.
 */

/** Size in bytes of each of the five header fields (§1: five unsigned 32-bit big-endian integers). */
export const FIELD_SIZE = 4;
/** Offsets of the header fields, in wire order. */
export const TYPE_OFFSET = 0;
export const SESSION_OFFSET = TYPE_OFFSET + FIELD_SIZE;
export const SEQ_OFFSET = SESSION_OFFSET + FIELD_SIZE;
export const ACK_OFFSET = SEQ_OFFSET + FIELD_SIZE;
export const LENGTH_OFFSET = ACK_OFFSET + FIELD_SIZE;
/** The seed's 20-byte header: type, session id, seq, ack, length. */
export const HEADER_SIZE = LENGTH_OFFSET + FIELD_SIZE;

/** Largest value a header field can carry. */
export const UINT32_MAX = 0xffff_ffff;

/**
 * Largest payload the protocol allows (§1). A header announcing more is a protocol error,
 * detected before any of the payload is buffered.
 */
export const MAX_PAYLOAD_BYTES = 64 * 1024;

/** Session id 0 addresses the link itself (heartbeats, handshake, resume markers). */
export const LINK_SESSION_ID = 0;

/** Protocol version carried in HELLO and WELCOME (§3). 2 added DATA_ACK_REQUEST. */
export const PROTOCOL_VERSION = 2;

/** Length of the random client identity carried in HELLO (§3). */
export const CLIENT_ID_BYTES = 16;

/**
 * Length of the client's random resume token, carried in HELLO after the id (§3). The server
 * binds it to the id at the first HELLO; only a HELLO with the same token resumes that client.
 */
export const RESUME_TOKEN_BYTES = 32;

/**
 * Packet types (§2). 0 and 1 keep the seed's meaning of its `is_heartbeat` field; the rest are
 * control types of this protocol.
 */
export enum PacketType {
  /** Sequenced. Payload: user bytes of one session. */
  Data = 0,
  /** Link level, not sequenced. Sent every heartbeat interval in each direction; no payload. */
  Heartbeat = 1,
  /** Link level, client to server, first packet of every link. Payload: version, client id, resume token. */
  Hello = 2,
  /** Link level, server to client, answer to HELLO. Payload: version, flags (known client). */
  Welcome = 3,
  /** Not sequenced. Resume: `ack` is the next seq the sender expects on this session. */
  Sync = 4,
  /** Link level, not sequenced. Ends the sender's list of SYNC packets. */
  SyncEnd = 5,
  /**
   * Sequenced. Opens a session; `ack` announces the reverse direction's first seq. Client to
   * server (a local forward), or server to client for a connection a remote forward's listener
   * accepted (§4.12; ids with SERVER_SESSION_ID_BIT).
   */
  Open = 6,
  /** Sequenced. The sender will send no more data on this session (half-close). */
  Fin = 7,
  /** Sequenced. The session is aborted; payload: UTF-8 reason. */
  Reset = 8,
  /** Not sequenced. Pure cumulative acknowledgement in the `ack` field. */
  Ack = 9,
  /** Link level, not sequenced. The sender is closing the link for good; payload: UTF-8 reason. */
  GoAway = 10,
  /**
   * Sequenced. DATA whose sender asks for an ack at once (§4.6): it has sent a quarter of its
   * window since it last asked. Other DATA may be acknowledged after a short delay.
   */
  DataAckRequest = 11,
  /**
   * Link level, client to server, first packet of a second connection of a running link: the
   * express lane (§4.11), which carries small sessions past the bulk ones. Payload: HELLO's. A
   * server older than it refuses the unknown type, and the link goes on with one connection.
   */
  Join = 12,
  /**
   * Link level, client to server, running phase: listen for me (a remote forward, §4.12). Session
   * id: the forward's number; payload: "bind:port". Sent again on every link, answered each time.
   */
  Listen = 13,
  /** Link level, server to client: the answer to LISTEN. Session id: the forward's number; ack: ListenStatus; payload: text. */
  ListenReply = 14,
}

/** One more than the largest defined packet type: anything at or above it is unknown. */
export const PACKET_TYPE_LIMIT = PacketType.ListenReply + 1;

/** LISTEN_REPLY's `ack` (§4.12). */
export enum ListenStatus {
  /** Listening; payload: the address bound, "host:port". */
  Listening = 0,
  /** sproxy's policy (--allow-listen) does not let this client listen there; payload: why. */
  NotAllowed = 1,
  /** The address could not be bound (in use, not local); payload: the error. */
  Failed = 2,
}

/**
 * Session ids with this bit were opened by the server (§4.12), without it by the client (§4.1):
 * each side hands out ids in its own half, so the two never pick the same one.
 */
export const SERVER_SESSION_ID_BIT = 0x8000_0000;

/** Why a GOAWAY was sent, in its `ack` field (§2): lets the client tell a refusal it must act on. */
export enum GoAwayCode {
  /** Shutting down, or any other reason. */
  Closing = 0,
  /** The peer failed to authenticate: no or wrong shared secret, or a resume with the wrong token. */
  Authentication = 1,
  /** A limit was reached (clients, connections); trying again later may work. */
  Limit = 2,
}

/** WELCOME flag bit: the server still holds this client's sessions (§3). */
export const WELCOME_FLAG_KNOWN_CLIENT = 0x1;
/** WELCOME flag bit: the server takes LISTEN (remote forwards, §4.12); an older one would call it a protocol error. */
export const WELCOME_FLAG_REMOTE_FORWARDS = 0x2;

/** Largest reason text carried by RESET and GOAWAY, in bytes. */
export const MAX_REASON_BYTES = 512;
