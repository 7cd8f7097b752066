import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { systemClock, type Clock, type TimerHandle } from '../support/clock.js';
import { resolveServerConfig, type ServerConfig } from './config.js';
import { timingSafeEqual } from 'node:crypto';
import { AuthenticationError, ClosedError, HandshakeError, LimitError, type EternalError } from '../support/errors.js';
import { createLink, type Link, type LinkHandler } from '../transport/link.js';
import { silentLogger, type Logger } from '../support/logger.js';
import { Multiplexer, type ResumeSummary } from '../engine/multiplexer.js';
import { SendBudget } from '../engine/send-budget.js';
import type { PathEstimate } from '../engine/send-scheduler.js';
import { createTrafficCounts, type TrafficCounts } from '../engine/traffic-counts.js';
import { LINK_SESSION_ID, PacketType, type ListenStatus } from '../protocol/constants.js';
import type { Frame } from '../protocol/frame-decoder.js';
import { decodeHello, encodeReason, encodeWelcome, HELLO_PAYLOAD_BYTES, type RemoteOpen } from '../protocol/messages.js';
import { GoAwayCode, MAX_PAYLOAD_BYTES } from '../protocol/constants.js';
import type { FinishReason, Session } from '../engine/session.js';

export interface ServerEndpointOptions {
  config?: Partial<ServerConfig>;
  logger?: Logger;
  clock?: Clock;
  copyWrites?: boolean;
  /**
   * Acknowledge a session's OPEN only when the application calls `session.confirmOpen()` (its
   * target answered), or with the RESET if it destroys the session first (PROTOCOL.md §4.2).
   * Off: at once, as the OPEN arrives.
   */
  confirmOpens?: boolean;
}

/** Who a session belongs to, for the application and the logs. */
export interface SessionContext {
  /** Hex form of the client's random id. */
  clientId: string;
  /** Address of the link the session was opened on. */
  peer: string;
  /** The target the client asked for ("host:port"), or null for the default. */
  target: string | null;
}

export interface ServerEndpointEvents {
  /** A client opened a session. */
  session: [session: Session, context: SessionContext];
  'session-finished': [session: Session, reason: FinishReason, detail: string, context: SessionContext];
  /** A client's link completed the resume exchange. */
  'client-up': [info: { clientId: string; peer: string; resumed: boolean; downMs: number | null; summary: ResumeSummary }];
  /** A link ended, before or after its handshake. */
  'link-down': [info: { clientId: string | null; peer: string; error: EternalError }];
  /** A client's sessions were dropped because it did not come back within the resume window. */
  'client-expired': [info: { clientId: string; sessions: number }];
  /** A client is forgotten (expired, closed, or the server is closing): its remote forwards go too. */
  'client-dropped': [info: { clientId: string; reason: string }];
  /**
   * A client asks us to listen on `address` ("bind:port") for its remote forward `forward`
   * (LISTEN, §4.12; again on each of its links). `reply` answers on its current link.
   */
  listen: [request: { clientId: string; peer: string; forward: number; address: string }, reply: (status: ListenStatus, text: string) => void];
}

/** What the server keeps per client, across that client's links. */
interface ClientRecord {
  readonly id: string;
  /** The token of the client's first HELLO; a resume must present the same one. */
  readonly resumeToken: Buffer;
  readonly mux: Multiplexer;
  link: Link | null;
  downSince: number | null;
  expiryTimer: TimerHandle | null;
  resumed: boolean;
}

/** Why a JOIN for `record`'s client cannot become its link's express lane, or null if it can. */
function joinRefusal(record: ClientRecord | undefined): string | null {
  if (record === undefined) return 'no such client';
  if (record.link === null || record.mux.phase !== 'running') return 'its link is not running';
  if (record.mux.expressLane !== null) return 'its link has an express lane already';
  return null;
}

/**
 * The server end: takes links, identifies the client of each by the id in its HELLO, lets a new
 * link supersede the client's old one at once (the roaming case, where the old one has not been
 * noticed dead yet), resumes the client's sessions, and drops them after the resume window.
 */
export class ServerEndpoint extends EventEmitter<ServerEndpointEvents> {
  readonly #config: ServerConfig;
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #copyWrites: boolean;
  readonly #confirmOpens: boolean;
  readonly #clients = new Map<string, ClientRecord>();
  /** Links that have not completed HELLO yet. */
  readonly #pending = new Set<Link>();
  /** Every client's send queues together are held to the configured budget. */
  readonly #sendBudget: SendBudget;
  /** What every client's sessions carried, added up by their multiplexers. */
  readonly #traffic = createTrafficCounts();
  #closed = false;

  constructor(options: ServerEndpointOptions = {}) {
    super();
    this.#config = resolveServerConfig(options.config);
    this.#logger = options.logger ?? silentLogger;
    this.#clock = options.clock ?? systemClock;
    this.#copyWrites = options.copyWrites ?? true;
    this.#confirmOpens = options.confirmOpens ?? false;
    this.#sendBudget = new SendBudget(this.#config.sendBudgetBytes);
  }

  get config(): Readonly<ServerConfig> {
    return this.#config;
  }

  /** Payload bytes the sessions of every client hold in their send queues (bounded by sendBudgetBytes). */
  get queuedSendBytes(): number {
    return this.#sendBudget.usedBytes;
  }

  get clientCount(): number {
    return this.#clients.size;
  }

  get pendingLinkCount(): number {
    return this.#pending.size;
  }

  /** What the sessions carried so far, every client's and link's together (read, not counted, by the metrics). */
  get traffic(): Readonly<TrafficCounts> {
    return this.#traffic;
  }

  /** Clients with a link up now (the others are away, held for their resume window). */
  get linkedClientCount(): number {
    let linked = 0;
    for (const record of this.#clients.values()) if (record.link !== null) linked++;
    return linked;
  }

  /** Sessions open, every client's together. */
  get sessionCount(): number {
    let sessions = 0;
    for (const record of this.#clients.values()) sessions += record.mux.sessionCount;
    return sessions;
  }

  /** The path each linked client's link measured (fastest round trip, best recent rate). */
  linkedClientPaths(): PathEstimate[] {
    const paths: PathEstimate[] = [];
    for (const record of this.#clients.values()) if (record.link !== null) paths.push(record.mux.path);
    return paths;
  }

  /**
   * A session to client `clientId` for a connection its remote forward accepted (§4.12). It works
   * at once: while the client is away, its OPEN and bytes queue until it is back. Null if the
   * client is not held.
   */
  openRemoteSession(clientId: string, open: RemoteOpen): Session | null {
    const record = this.#clients.get(clientId);
    return record === undefined ? null : record.mux.openRemoteSession(open);
  }

  /** Whether client `clientId` is held and has a link up now (not away, waiting to resume). */
  isClientLinked(clientId: string): boolean {
    return this.#clients.get(clientId)?.link != null;
  }

  /** Takes a new transport connection (from a net.Server or tls.Server). */
  handleConnection(socket: Duplex, peer: string): void {
    if (this.#closed) {
      socket.destroy();
      return;
    }
    if (this.#pending.size >= this.#config.maxPendingLinks) {
      socket.destroy();
      this.emit('link-down', {
        clientId: null,
        peer,
        error: new LimitError(`too many connections without HELLO (limit ${this.#config.maxPendingLinks})`),
      });
      return;
    }
    const link = createLink(socket, peer, this.#config, this.#clock);
    this.#pending.add(link);
    // Until it has said who it is, a peer may make us buffer no more than one HELLO.
    link.maxPayloadBytes = HELLO_PAYLOAD_BYTES;
    // Heartbeats alone keep a link alive; without this, a peer that never says HELLO would hold
    // a pending link for ever.
    const handshakeTimer = this.#clock.setTimeout(() => {
      if (this.#pending.has(link)) link.fail(new HandshakeError(`no HELLO within ${this.#config.deadAfterMs} ms`));
    }, this.#config.deadAfterMs);
    const handshake: LinkHandler = {
      onFrame: (_link, frame) => this.#onHello(link, frame),
      onWritable: () => {},
    };
    link.setHandler(handshake);
    link.onDown((_link, error) => {
      handshakeTimer.cancel();
      if (this.#pending.delete(link)) this.#onLinkDown(link, null, error);
    });
  }

  /** Closes every link and session: GOAWAY to each client, then reset every session. Idempotent. */
  close(reason = 'server shutting down'): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const link of this.#pending) link.fail(new ClosedError(reason));
    this.#pending.clear();
    for (const record of [...this.#clients.values()]) this.#dropClient(record, reason, true);
  }

  #onHello(link: Link, frame: Frame): void {
    const { type } = frame.header;
    if ((type !== PacketType.Hello && type !== PacketType.Join) || frame.header.sessionId !== LINK_SESSION_ID) {
      throw new HandshakeError(`expected HELLO, got ${PacketType[type] ?? type}`);
    }
    const hello = decodeHello(frame.payload);
    const clientId = hello.clientId.toString('hex');
    let record = this.#clients.get(clientId);
    const knownClient = record !== undefined;
    if (record !== undefined && !timingSafeEqual(record.resumeToken, hello.resumeToken)) {
      // Knowing a client id is not enough to take over its sessions.
      const reason = `resume of client ${clientId.slice(0, 8)} refused: wrong resume token`;
      link.refuse(GoAwayCode.Authentication, reason, new AuthenticationError(reason));
      return;
    }
    if (type === PacketType.Join) {
      this.#onJoin(link, record, clientId);
      return;
    }
    if (record === undefined && this.#clients.size >= this.#config.maxClients) {
      const reason = `too many clients (limit ${this.#config.maxClients})`;
      link.refuse(GoAwayCode.Limit, reason, new LimitError(reason));
      return;
    }
    this.#pending.delete(link);
    link.maxPayloadBytes = MAX_PAYLOAD_BYTES;
    if (record === undefined) {
      record = this.#createClient(clientId, hello.resumeToken);
    } else if (record.link !== null) {
      // A resume from the same client replaces its old link at once: after roaming, the old one
      // may take seconds to be noticed dead, and nothing useful can travel on it any more.
      this.#logger.info({ client: clientId, old: record.link.peer, peer: link.peer }, 'new link supersedes the old one');
      const old = record.link;
      record.link = null;
      old.fail(new ClosedError(`superseded by a new link from ${link.peer}`));
    }
    record.expiryTimer?.cancel();
    record.expiryTimer = null;
    record.link = link;
    record.resumed = knownClient;
    const current = record;
    link.onDown((_link, error) => {
      if (current.link === link) this.#onLinkDown(link, current, error);
    });
    link.writePacket(PacketType.Welcome, LINK_SESSION_ID, 0, 0, encodeWelcome(knownClient));
    record.mux.attach(link, true);
    // The handshake's round trip is the client's to time (HELLO to WELCOME). Ours would come from
    // our first packets the client acks at once, sent only once a download has filled the path's
    // queue: 119 ms on a 100 ms path, and the budget (§9.4) a fifth larger. A probe now, on the
    // idle path, times the path itself.
    const probedAt = this.#clock.now();
    link.probe(() => current.mux.noteRoundTrip(link, this.#clock.now() - probedAt));
  }

  /**
   * A second connection of a client's running link, to be its express lane (§4.11). Refused
   * (and the client goes on with one connection) for a client we do not hold, one without a
   * running link, or one whose link has its lane already.
   */
  #onJoin(link: Link, record: ClientRecord | undefined, clientId: string): void {
    const refusal = joinRefusal(record);
    if (record === undefined || refusal !== null) {
      const reason = `express lane for client ${clientId.slice(0, 8)} refused: ${refusal}`;
      link.refuse(GoAwayCode.Closing, reason, new HandshakeError(reason));
      return;
    }
    this.#pending.delete(link);
    link.maxPayloadBytes = MAX_PAYLOAD_BYTES;
    link.writePacket(PacketType.Welcome, LINK_SESSION_ID, 0, 0, encodeWelcome(true));
    record.mux.attachExpress(link);
    this.#logger.debug({ client: clientId, peer: link.peer }, 'express lane joined');
  }

  #createClient(clientId: string, resumeToken: Buffer): ClientRecord {
    const mux = new Multiplexer({
      role: 'server',
      config: this.#config,
      logger: this.#logger,
      copyWrites: this.#copyWrites,
      confirmOpens: this.#confirmOpens,
      maxSessions: this.#config.maxSessionsPerClient,
      clock: this.#clock,
      sendBudget: this.#sendBudget,
      traffic: this.#traffic,
    });
    const record: ClientRecord = {
      id: clientId,
      resumeToken,
      mux,
      link: null,
      downSince: null,
      expiryTimer: null,
      resumed: false,
    };
    const context = (target: string | null = null): SessionContext => ({ clientId, peer: record.link?.peer ?? 'none', target });
    mux.on('session', (session, target) => this.emit('session', session, context(target)));
    mux.on('session-finished', (session, reason, detail) => this.emit('session-finished', session, reason, detail, context()));
    mux.on('goaway', (reason) => this.#dropClient(record, `client closed: ${reason}`, false));
    mux.on('listen', (forward, address) => {
      const reply = (status: ListenStatus, text: string): void => mux.sendLinkMessage(PacketType.ListenReply, forward, status, encodeReason(text));
      this.emit('listen', { clientId, peer: record.link?.peer ?? 'none', forward, address }, reply);
    });
    mux.on('resumed', (summary) => {
      const downMs = record.downSince === null ? null : Math.round(this.#clock.now() - record.downSince);
      record.downSince = null;
      this.emit('client-up', { clientId, peer: record.link?.peer ?? 'none', resumed: record.resumed, downMs, summary });
    });
    this.#clients.set(clientId, record);
    return record;
  }

  #onLinkDown(link: Link, record: ClientRecord | null, error: EternalError): void {
    this.emit('link-down', { clientId: record?.id ?? null, peer: link.peer, error });
    if (record === null) return;
    record.link = null;
    record.downSince = this.#clock.now();
    if (error.code === 'ETCP_ERR_CLOSED' || this.#closed) return;
    // Kept even with no session: an OPEN may have died with the link, and the client can replay it
    // safely only if we still know it when it returns.
    record.expiryTimer = this.#clock.setTimeout(() => {
      const sessions = record.mux.sessionCount;
      this.emit('client-expired', { clientId: record.id, sessions });
      this.#dropClient(record, 'resume window expired', false);
    }, this.#config.resumeWindowMs);
  }

  #dropClient(record: ClientRecord, reason: string, sendGoAway: boolean): void {
    record.expiryTimer?.cancel();
    record.expiryTimer = null;
    this.#clients.delete(record.id);
    record.mux.loseAll(reason);
    this.emit('client-dropped', { clientId: record.id, reason });
    const link = record.link;
    if (link !== null) {
      if (sendGoAway) record.mux.sendGoAway(reason);
      record.link = null;
      link.fail(new ClosedError(reason));
    }
  }
}
