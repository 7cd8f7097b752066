import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { formatHostPort, parseHostPort, type HostPort } from '../common/transport/address.js';
import { adoptDirectReads } from '../common/transport/direct-reads.js';
import { bridgeSocket, LOCAL_SOCKET_HIGH_WATER_BYTES } from '../common/forwarding/bridge.js';
import { allowingRule, type TargetRule } from '../common/forwarding/target-policy.js';
import { ListenStatus } from '../common/protocol/constants.js';
import { listenOn } from '../common/transport/listen.js';
import { describeError, type Logger } from '../common/support/logger.js';
import type { ServerEndpoint } from '../common/endpoints/server-endpoint.js';
import type { Session } from '../common/engine/session.js';

/**
 * Connections one remote forward holds whose session the client has not yet taken (its OPEN not
 * acknowledged: the client is away, or still connecting to its target). More are reset: while
 * the client is away each waits with its bytes queued, and a flood must not grow that without
 * bound.
 */
export const MAX_WAITING_PER_REMOTE_FORWARD = 64;

/** Remote forwards one client may have: each is a listening socket, and a client must not take them all. */
export const MAX_REMOTE_FORWARDS_PER_CLIENT = 64;

/** One client's remote forward: sproxy's listener and what it answered. */
interface RemoteListener {
  address: string;
  status: ListenStatus;
  text: string;
  server: Server | null;
  waiting: Set<Session>;
}

/** A listener being bound: a LISTEN repeated meanwhile waits for `ready`. */
type Binding = RemoteListener & { ready: Promise<void> };

/**
 * sproxy's side of remote forwards (cproxy -R, PROTOCOL.md §4.12): listens where a client asks,
 * if `--allow-listen` lets it, and turns each accepted connection into a session the server
 * opens to that client. The listeners live as long as the client is held (its resume window), so
 * that a reverse tunnel survives the client's outages: a connection accepted while it is away
 * waits (at most MAX_WAITING_PER_REMOTE_FORWARD of them) and goes through once it is back.
 */
export class RemoteListeners {
  readonly #endpoint: ServerEndpoint;
  readonly #rules: readonly TargetRule[];
  readonly #logger: Logger;
  /** By client id, then by forward number. */
  readonly #byClient = new Map<string, Map<number, Binding>>();
  readonly #sockets = new Set<Socket>();

  constructor(endpoint: ServerEndpoint, rules: readonly TargetRule[], logger: Logger) {
    this.#endpoint = endpoint;
    this.#rules = rules;
    this.#logger = logger;
    endpoint.on('listen', (request, reply) => {
      void this.#onListen(request.clientId, request.forward, request.address).then((listener) => reply(listener.status, listener.text));
    });
    endpoint.on('client-dropped', ({ clientId, reason }) => this.#dropClient(clientId, reason));
  }

  /** Closes every listener and resets every connection they accepted. */
  close(): void {
    for (const clientId of [...this.#byClient.keys()]) this.#dropClient(clientId, 'sproxy shutting down');
    for (const socket of this.#sockets) socket.resetAndDestroy();
  }

  async #onListen(clientId: string, forward: number, address: string): Promise<RemoteListener> {
    let forwards = this.#byClient.get(clientId);
    if (forwards === undefined) {
      forwards = new Map();
      this.#byClient.set(clientId, forwards);
    }
    // Asked again on a later link: the same answer, the listener as it is.
    const known = forwards.get(forward);
    if (known !== undefined && known.address === address) return known.ready.then(() => known);
    known?.server?.close();
    if (known === undefined && forwards.size >= MAX_REMOTE_FORWARDS_PER_CLIENT) {
      return { address, status: ListenStatus.Failed, text: `too many remote forwards for one client (limit ${MAX_REMOTE_FORWARDS_PER_CLIENT})`, server: null, waiting: new Set() };
    }
    const listener: RemoteListener = { address, status: ListenStatus.Failed, text: '', server: null, waiting: new Set() };
    const binding: Binding = Object.assign(listener, { ready: this.#bind(clientId, forward, listener) });
    forwards.set(forward, binding);
    return binding.ready.then(() => binding);
  }

  async #bind(clientId: string, forward: number, listener: RemoteListener): Promise<void> {
    const { address } = listener;
    const label = { client: clientId.slice(0, 8), forward, listen: address };
    let bind: HostPort;
    try {
      bind = parseHostPort(address, 'listen address', undefined, true);
    } catch (error) {
      listener.text = describeError(error);
      return;
    }
    if (!this.#mayListen(bind)) {
      listener.status = ListenStatus.NotAllowed;
      listener.text = `sproxy does not let clients listen on ${address} (see its --allow-listen)`;
      this.#logger.warn(label, 'remote forward refused: address not allowed');
      return;
    }
    this.#takeOverFromAbsent(clientId, address);
    const server = createServer({ allowHalfOpen: true, noDelay: true, highWaterMark: LOCAL_SOCKET_HIGH_WATER_BYTES }, (socket) =>
      this.#accept(clientId, forward, listener, socket),
    );
    try {
      const bound: AddressInfo = await listenOn(server, bind);
      if (this.#byClient.get(clientId)?.get(forward) !== listener) {
        server.close(); // the client went (or asked again elsewhere) while this was binding
        return;
      }
      listener.server = server;
      listener.status = ListenStatus.Listening;
      listener.text = formatHostPort({ host: bound.address, port: bound.port });
      server.on('error', (error) => this.#logger.error({ ...label, reason: describeError(error) }, 'remote forward listener error'));
      this.#logger.info({ ...label, listen: listener.text }, 'remote forward listening');
    } catch (error) {
      listener.text = `cannot listen on ${address}: ${describeError(error)}`;
      this.#logger.warn({ ...label, reason: listener.text }, 'remote forward failed');
    }
  }

  /**
   * A client that restarted comes back with a new id, and asks for what its old self still holds
   * (kept for the old id's resume window, 24 h by default). An address held for a client that is
   * away is given up to the one asking: else the restarted client could not listen there for a day.
   * One whose client is linked now stays (two live clients asking for one port: the second fails).
   */
  #takeOverFromAbsent(clientId: string, address: string): void {
    for (const [holder, forwards] of this.#byClient) {
      if (holder === clientId || this.#endpoint.isClientLinked(holder)) continue;
      for (const [forward, listener] of forwards) {
        // Asked for as it was, or by the address it got (port 0 asks for any; the answer names it).
        const same = listener.address === address || (listener.status === ListenStatus.Listening && listener.text === address);
        if (!same || listener.server === null) continue;
        listener.server.close();
        for (const session of listener.waiting) session.destroy(new Error(`remote forward ${address} taken over by another client`));
        forwards.delete(forward);
        this.#logger.warn({ client: holder.slice(0, 8), forward, listen: address, to: clientId.slice(0, 8) }, 'remote forward taken over: its client is away');
      }
    }
  }

  /** --allow-listen lets a client listen on `bind`; on port 0 (any free port) only where every port is allowed. */
  #mayListen(bind: HostPort): boolean {
    if (bind.port !== 0) return allowingRule(this.#rules, bind) !== null;
    const everyPort = (rule: TargetRule): boolean => rule.ports.some(([low, high]) => low === 1 && high === 65535);
    return this.#rules.some((rule) => everyPort(rule) && allowingRule([rule], { host: bind.host, port: 1 }) !== null);
  }

  #accept(clientId: string, forward: number, listener: RemoteListener, socket: Socket): void {
    const from = `${socket.remoteAddress}:${socket.remotePort}`;
    const label = { client: clientId.slice(0, 8), forward, from };
    if (listener.waiting.size >= MAX_WAITING_PER_REMOTE_FORWARD) {
      this.#logger.warn({ ...label, limit: MAX_WAITING_PER_REMOTE_FORWARD }, 'remote forward connection refused: too many waiting for the client');
      socket.on('error', () => {});
      socket.resetAndDestroy();
      return;
    }
    const session = this.#endpoint.openRemoteSession(clientId, { forward, origin: from });
    if (session === null) {
      socket.on('error', () => {});
      socket.resetAndDestroy();
      return;
    }
    adoptDirectReads(socket);
    this.#sockets.add(socket);
    socket.on('close', () => this.#sockets.delete(socket));
    // Waiting until the client has connected its end (it acknowledges the OPEN then).
    listener.waiting.add(session);
    const settled = (): void => {
      listener.waiting.delete(session);
    };
    session.once('established', settled);
    session.once('close', settled);
    this.#logger.info({ ...label, session: session.id }, 'remote forward connection; session opened to the client');
    bridgeSocket(socket, session, this.#logger, { ...label, session: session.id });
  }

  #dropClient(clientId: string, reason: string): void {
    const forwards = this.#byClient.get(clientId);
    if (forwards === undefined) return;
    this.#byClient.delete(clientId);
    for (const [forward, listener] of forwards) {
      if (listener.server === null) continue;
      listener.server.close();
      this.#logger.info({ client: clientId.slice(0, 8), forward, listen: listener.text, reason }, 'remote forward closed: its client is gone');
    }
  }
}
