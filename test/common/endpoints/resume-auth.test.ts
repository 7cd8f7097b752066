/**
 * Who may resume a client's sessions, and the server's limits on who it takes: a HELLO with a
 * known client id but the wrong resume token is refused (AuthenticationError) and harms nobody;
 * the real client resumes; maxClients and maxPendingLinks refuse with LimitError, which the
 * client treats as "try again later", not as an authentication failure.
 * ClientEndpoints and a ServerEndpoint in one process, on a manual clock, over in-memory pairs
 * (the approach of endpoints.test.ts).
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ClientEndpoint, type Dialer } from '../../../common/endpoints/client-endpoint.js';
import type { ClientConfig, ServerConfig } from '../../../common/endpoints/config.js';
import { AuthenticationError, LimitError, SessionLostError, type EternalError } from '../../../common/support/errors.js';
import { CLIENT_ID_BYTES, RESUME_TOKEN_BYTES } from '../../../common/protocol/constants.js';
import { ServerEndpoint, type ServerEndpointEvents, type SessionContext } from '../../../common/endpoints/server-endpoint.js';
import type { Session } from '../../../common/engine/session.js';
import { useCleanup } from '../../helpers/cleanup.js';
import type { ClientUpInfo, Finished, LinkDownInfo, RetryInfo, UpInfo } from '../../helpers/endpoint-events.js';
import { FaultyPair, MemorySocket, settle } from '../../helpers/duplex-pair.js';
import { ManualClock } from '../../helpers/manual-clock.js';

const onCleanup = useCleanup();



/** One ServerEndpoint on a manual clock, with what it emits recorded. */
class TestServer {
  readonly clock = new ManualClock();
  readonly endpoint: ServerEndpoint;
  readonly linkDowns: LinkDownInfo[] = [];
  readonly clientUps: ClientUpInfo[] = [];
  readonly sessions: Array<{ session: Session; context: SessionContext; errors: Error[] }> = [];
  readonly finished: Finished[] = [];
  readonly expired: Array<ServerEndpointEvents['client-expired'][0]> = [];
  readonly #sessionWaiters: Array<{ index: number; resolve: (session: Session) => void }> = [];

  constructor(config: Partial<ServerConfig> = {}) {
    const endpoint = new ServerEndpoint({ clock: this.clock, config });
    this.endpoint = endpoint;
    onCleanup(() => endpoint.close());
    endpoint.on('link-down', (info) => this.linkDowns.push(info));
    endpoint.on('client-up', (info) => this.clientUps.push(info));
    endpoint.on('client-expired', (info) => this.expired.push(info));
    endpoint.on('session-finished', (session, reason, detail) => this.finished.push({ session, reason, detail }));
    endpoint.on('session', (session, context) => {
      const errors: Error[] = [];
      session.on('error', (error) => errors.push(error));
      this.sessions.push({ session, context, errors });
      for (const waiter of [...this.#sessionWaiters]) {
        if (waiter.index < this.sessions.length) {
          this.#sessionWaiters.splice(this.#sessionWaiters.indexOf(waiter), 1);
          waiter.resolve(session);
        }
      }
    });
  }

  /** The `index`-th session opened at the server (0-based), once it exists. */
  session(index: number): Promise<Session> {
    const existing = this.sessions[index];
    if (existing !== undefined) return Promise.resolve(existing.session);
    return new Promise((resolve) => this.#sessionWaiters.push({ index, resolve }));
  }

  errorsOf(session: Session): Error[] {
    return this.sessions.find((entry) => entry.session === session)?.errors ?? [];
  }

  /** A raw connection that says nothing: the server end goes to handleConnection. */
  stranger(peer: string): { pair: FaultyPair } {
    const pair = new FaultyPair();
    pair.a.on('error', () => {});
    pair.a.resume();
    this.endpoint.handleConnection(pair.b, peer);
    return { pair };
  }
}

interface ClientOptions {
  clientId?: Buffer;
  resumeToken?: Buffer;
  config?: Partial<ClientConfig>;
}

/**
 * A ClientEndpoint dialling `server` over in-memory pairs (peers `<name>-1`, `<name>-2`, ...),
 * with what it emits recorded. `mode` 'refuse' makes dials fail as if the path were down.
 */
class TestClient {
  readonly endpoint: ClientEndpoint;
  readonly pairs: FaultyPair[] = [];
  mode: 'accept' | 'refuse' = 'accept';
  readonly ups: UpInfo[] = [];
  readonly downs: EternalError[] = [];
  readonly retries: RetryInfo[] = [];
  readonly authFailures: AuthenticationError[] = [];
  /** Each refusal's count in a row ('auth-refused'), with its error's code. */
  readonly authRefusals: Array<[string, number]> = [];
  readonly finished: Finished[] = [];
  readonly #sessionErrors = new Map<Session, Error[]>();

  constructor(
    readonly server: TestServer,
    readonly name: string,
    options: ClientOptions = {},
  ) {
    const dial: Dialer = () => {
      if (this.mode === 'refuse') return MemorySocket.refused();
      const pair = new FaultyPair();
      this.pairs.push(pair);
      server.endpoint.handleConnection(pair.b, `${name}-${this.pairs.length}`);
      return pair.a;
    };
    const endpoint = new ClientEndpoint({
      dial,
      serverName: 'memory',
      clock: server.clock,
      random: () => 0,
      ...(options.clientId === undefined ? {} : { clientId: options.clientId }),
      ...(options.resumeToken === undefined ? {} : { resumeToken: options.resumeToken }),
      config: { expressLane: false, ...options.config },
    });
    this.endpoint = endpoint;
    onCleanup(() => endpoint.close('test over'));
    endpoint.on('up', (info) => this.ups.push(info));
    endpoint.on('down', (error) => this.downs.push(error));
    endpoint.on('retry', (info) => this.retries.push(info));
    endpoint.on('auth-failed', (error) => this.authFailures.push(error));
    endpoint.on('auth-refused', (error, inARow) => this.authRefusals.push([error.code, inARow]));
    endpoint.on('session-finished', (session, reason, detail) => this.finished.push({ session, reason, detail }));
  }

  get pair(): FaultyPair {
    const pair = this.pairs.at(-1);
    if (pair === undefined) throw new Error(`${this.name} has no link yet`);
    return pair;
  }

  nextUp(): Promise<UpInfo> {
    return new Promise((resolve) => this.endpoint.once('up', resolve));
  }

  open(): Session {
    const session = this.endpoint.openSession();
    const errors: Error[] = [];
    this.#sessionErrors.set(session, errors);
    session.on('error', (error) => errors.push(error));
    return session;
  }

  errorsOf(session: Session): Error[] {
    return this.#sessionErrors.get(session) ?? [];
  }
}

/** Writes `text` on one end of a session and expects exactly it at the other. */
async function expectCarried(from: Session, to: Session, text: string): Promise<void> {
  from.write(text);
  await settle();
  expect((to.read() as Buffer | null)?.toString('utf8')).toBe(text);
}

/** A session of `client` and its server side, having carried a message each way. */
async function openedSession(client: TestClient): Promise<{ atClient: Session; atServer: Session }> {
  const index = client.server.sessions.length;
  const atClient = client.open();
  atClient.write('?');
  const atServer = await client.server.session(index);
  await settle();
  expect((atServer.read() as Buffer | null)?.toString('utf8')).toBe('?');
  await expectCarried(atServer, atClient, '!');
  return { atClient, atServer };
}

/** Advances the clock timer by timer until `done()` holds. */
async function advanceUntil(clock: ManualClock, done: () => boolean, limitMs = 60_000): Promise<void> {
  const endMs = clock.now() + limitMs;
  while (!done()) {
    const due = clock.nextDueMs;
    if (due === null || due > endMs) throw new Error(`condition not reached within ${limitMs} ms of clock time`);
    await clock.advanceTo(due);
  }
}

const wrongTokenMessage = (clientId: Buffer): string =>
  `resume of client ${clientId.toString('hex').slice(0, 8)} refused: wrong resume token`;


/** The server refused exactly one link, from `peer`, before any client id was bound to it. */
function expectOneRefusedLink(
  server: TestServer,
  peer: string,
  errorClass: new (...args: never[]) => EternalError,
  code: string,
  message: string,
): void {
  expect(server.linkDowns).toHaveLength(1);
  const [down] = server.linkDowns;
  expect(down).toMatchObject({ clientId: null, peer });
  expect(down?.error).toBeInstanceOf(errorClass);
  expect(down?.error.code).toBe(code);
  expect(down?.error.message).toBe(message);
}
describe('resume authentication: a client id alone gets nothing', () => {
  it('a second client with the same id and another token is refused; the owner\'s sessions are untouched', async () => {
    const server = new TestServer();
    const clientId = randomBytes(CLIENT_ID_BYTES);
    const owner = new TestClient(server, 'owner', { clientId, resumeToken: randomBytes(RESUME_TOKEN_BYTES) });
    await owner.nextUp();
    const { atClient, atServer } = await openedSession(owner);
    const ownerPair = owner.pair;

    const impostor = new TestClient(server, 'impostor', { clientId, resumeToken: randomBytes(RESUME_TOKEN_BYTES) });
    // A session the impostor opened before its link was refused: it must not reach the owner's sessions.
    const impostorSession = impostor.open();
    impostorSession.write('let me in');
    await settle();

    // The server: an authentication failure on the impostor's link, before any client id is bound to it.
    expectOneRefusedLink(server, 'impostor-1', AuthenticationError, 'ETCP_ERR_AUTH', wrongTokenMessage(clientId));
    expect(server.clientUps.map((up) => up.peer)).toEqual(['owner-1']);
    expect(server.endpoint.clientCount).toBe(1);
    expect(server.endpoint.pendingLinkCount).toBe(0);

    // The impostor: told why (GOAWAY with the authentication code). One refusal could be injected
    // by an attacker on the path, so the client tries again before it gives up on its sessions.
    const refusal = `sproxy refused the link: ${wrongTokenMessage(clientId)}`;
    expect(impostor.retries).toEqual([{ attempt: 1, delayMs: 50, error: refusal }]);
    expect(impostor.authRefusals).toEqual([['ETCP_ERR_AUTH', 1]]);
    expect(impostor.authFailures).toEqual([]);
    expect(impostor.endpoint.authenticationFailed).toBe(false);
    expect(impostor.ups).toEqual([]);
    expect(impostor.endpoint.state).toBe('waiting');

    // The owner: its link never went down, its session carries data both ways, nothing reached it.
    expect(owner.downs).toEqual([]);
    expect(ownerPair.b.destroyed).toBe(false);
    await expectCarried(atClient, atServer, 'still mine');
    await expectCarried(atServer, atClient, 'and back');
    expect(server.sessions).toHaveLength(1);

    // Three refusals in a row: the impostor gives up its sessions (auth-failed) and redials only slowly.
    await advanceUntil(server.clock, () => impostor.authFailures.length === 1);
    expect(server.linkDowns.map((d) => [d.peer, d.error.code, d.error.message])).toEqual(
      [1, 2, 3].map((n) => [`impostor-${n}`, 'ETCP_ERR_AUTH', wrongTokenMessage(clientId)]),
    );
    // Each refusal is told as it comes (the metrics count them), the giving up once.
    expect(impostor.authRefusals).toEqual([['ETCP_ERR_AUTH', 1], ['ETCP_ERR_AUTH', 2], ['ETCP_ERR_AUTH', 3]]);
    const [authFailure] = impostor.authFailures;
    expect(authFailure).toBeInstanceOf(AuthenticationError);
    expect(authFailure?.code).toBe('ETCP_ERR_AUTH');
    expect(authFailure?.message).toBe(refusal);
    expect(impostor.endpoint.authenticationFailed).toBe(true);
    expect(impostor.finished.map((f) => [f.session, f.reason, f.detail])).toEqual([[impostorSession, 'lost', refusal]]);
    expect(impostor.errorsOf(impostorSession)).toHaveLength(1);
    expect(impostor.errorsOf(impostorSession)[0]).toBeInstanceOf(SessionLostError);
    expect(impostor.endpoint.sessionCount).toBe(0);
    // Straight to the longest backoff step (reconnectMaxDelayMs 1000; jitter 0 gives half of it).
    expect(impostor.retries.map((retry) => retry.delayMs)).toEqual([50, 100, 500]);
    expect(impostor.retries.every((retry) => retry.error === refusal)).toBe(true);
    expect(impostor.ups).toEqual([]);

    // The owner did not notice any of it.
    expect(owner.downs).toEqual([]);
    expect(ownerPair.b.destroyed).toBe(false);
    await expectCarried(atClient, atServer, 'unharmed');
    await expectCarried(atServer, atClient, 'still');
    expect(owner.errorsOf(atClient)).toEqual([]);
    expect(server.errorsOf(atServer)).toEqual([]);
    expect(owner.finished).toEqual([]);
    expect(server.finished).toEqual([]);
    expect(server.endpoint.clientCount).toBe(1);
    expect(server.clientUps.map((up) => up.peer)).toEqual(['owner-1']);
  });

  it('refuses the impostor while the owner is away too, and the owner then resumes its sessions', async () => {
    const server = new TestServer();
    const clientId = randomBytes(CLIENT_ID_BYTES);
    const owner = new TestClient(server, 'owner', { clientId, resumeToken: randomBytes(RESUME_TOKEN_BYTES) });
    await owner.nextUp();
    const { atClient, atServer } = await openedSession(owner);

    // The owner's link dies and its path stays down.
    owner.mode = 'refuse';
    owner.pair.cut();
    await settle();
    expect(owner.downs.map((error) => error.code)).toEqual(['ETCP_ERR_LINK_CLOSED']);
    expect(server.linkDowns.map((d) => [d.peer, d.error.code])).toEqual([['owner-1', 'ETCP_ERR_LINK_CLOSED']]);
    atClient.write('written while away');

    const impostor = new TestClient(server, 'impostor', { clientId, resumeToken: randomBytes(RESUME_TOKEN_BYTES) });
    await settle();
    expect(server.linkDowns.map((d) => [d.peer, d.error.code])).toEqual([
      ['owner-1', 'ETCP_ERR_LINK_CLOSED'],
      ['impostor-1', 'ETCP_ERR_AUTH'],
    ]);
    expect(impostor.retries.map((retry) => retry.error)).toEqual([`sproxy refused the link: ${wrongTokenMessage(clientId)}`]);
    expect(server.errorsOf(atServer)).toEqual([]);
    expect(server.clientUps).toHaveLength(1);

    // The owner's path returns: same id, same token, sessions resumed where they stopped.
    owner.mode = 'accept';
    const resumed = owner.nextUp();
    await advanceUntil(server.clock, () => owner.ups.length === 2);
    expect(await resumed).toMatchObject({ knownClient: true, summary: { sessions: 1, lostSessions: 0 } });
    await settle();
    expect(server.clientUps.at(-1)).toMatchObject({ clientId: clientId.toString('hex'), resumed: true });
    expect((atServer.read() as Buffer | null)?.toString('utf8')).toBe('written while away');
    await expectCarried(atServer, atClient, 'welcome back');
    expect(owner.endpoint.authenticationFailed).toBe(false);
    expect(owner.errorsOf(atClient)).toEqual([]);
    expect(server.errorsOf(atServer)).toEqual([]);
    // Every attempt of the impostor meanwhile was refused.
    const impostorDowns = server.linkDowns.filter((d) => d.peer.startsWith('impostor-'));
    expect(impostorDowns.length).toBeGreaterThanOrEqual(1);
    expect(impostorDowns.every((d) => d.error instanceof AuthenticationError)).toBe(true);
  });

  it('the legitimate client resumes after a cut at once, with its sessions', async () => {
    const server = new TestServer();
    const owner = new TestClient(server, 'owner', { clientId: randomBytes(CLIENT_ID_BYTES), resumeToken: randomBytes(RESUME_TOKEN_BYTES) });
    await owner.nextUp();
    const { atClient, atServer } = await openedSession(owner);

    const resumed = owner.nextUp();
    owner.pair.cut();
    expect(await resumed).toMatchObject({ knownClient: true, summary: { sessions: 1, lostSessions: 0 } });
    expect(owner.pairs).toHaveLength(2);
    expect(owner.authFailures).toEqual([]);
    await expectCarried(atClient, atServer, 'after the cut');
    await expectCarried(atServer, atClient, 'and back');
    expect(server.linkDowns.map((d) => d.error.code)).toEqual(['ETCP_ERR_LINK_CLOSED']);
  });

  it('a refused impostor neither cancels nor restarts the owner\'s resume window', async () => {
    const server = new TestServer({ resumeWindowMs: 10_000 });
    const clientId = randomBytes(CLIENT_ID_BYTES);
    const owner = new TestClient(server, 'owner', { clientId, resumeToken: randomBytes(RESUME_TOKEN_BYTES) });
    await owner.nextUp();
    const { atServer } = await openedSession(owner);
    owner.mode = 'refuse';
    owner.pair.cut();
    await settle();

    await server.clock.advance(6000);
    const impostor = new TestClient(server, 'impostor', { clientId, resumeToken: randomBytes(RESUME_TOKEN_BYTES) });
    await settle();
    expect(server.linkDowns.map((d) => [d.peer, d.error.code])).toEqual([
      ['owner-1', 'ETCP_ERR_LINK_CLOSED'],
      ['impostor-1', 'ETCP_ERR_AUTH'],
    ]);
    expect(impostor.ups).toEqual([]);
    expect(server.expired).toEqual([]);

    // Expiry 10 s after the owner's link went down, however often the impostor tried meanwhile.
    await server.clock.advance(3999);
    expect(server.expired).toEqual([]);
    expect(server.linkDowns.filter((d) => d.peer.startsWith('impostor-')).every((d) => d.error.code === 'ETCP_ERR_AUTH')).toBe(true);
    await server.clock.advance(1);
    expect(server.expired).toEqual([{ clientId: clientId.toString('hex'), sessions: 1 }]);
    expect(server.finished.map((f) => [f.session, f.reason])).toEqual([[atServer, 'lost']]);
  });
});

describe('server limits', () => {
  it('maxClients: 1 refuses a second client with LimitError; it keeps retrying (not an auth failure) and gets in once there is room', async () => {
    const server = new TestServer({ maxClients: 1 });
    const first = new TestClient(server, 'first');
    await first.nextUp();
    const { atClient, atServer } = await openedSession(first);

    const second = new TestClient(server, 'second');
    const waiting = second.open();
    waiting.write('queued until there is room');
    await settle();

    expectOneRefusedLink(server, 'second-1', LimitError, 'ETCP_ERR_LIMIT', 'too many clients (limit 1)');
    expect(server.endpoint.clientCount).toBe(1);

    // Not an authentication failure: no auth-failed, its session is kept, it retries with the usual backoff.
    expect(second.authFailures).toEqual([]);
    expect(second.endpoint.authenticationFailed).toBe(false);
    expect(second.finished).toEqual([]);
    expect(second.endpoint.sessionCount).toBe(1);
    expect(second.retries).toEqual([{ attempt: 1, delayMs: 50, error: 'sproxy refused the link: too many clients (limit 1)' }]);
    expect(second.endpoint.state).toBe('waiting');

    await server.clock.advance(50);
    await settle();
    expect(second.pairs).toHaveLength(2);
    expect(server.linkDowns.map((d) => [d.peer, d.error.code])).toEqual([
      ['second-1', 'ETCP_ERR_LIMIT'],
      ['second-2', 'ETCP_ERR_LIMIT'],
    ]);
    expect(second.retries.map((retry) => retry.attempt)).toEqual([1, 2]);

    // The first client is unaffected throughout.
    expect(first.downs).toEqual([]);
    await expectCarried(atClient, atServer, 'first still works');
    await expectCarried(atServer, atClient, 'both ways');

    // Room again (the first client leaves for good): the second gets in on its next attempt, session and all.
    first.endpoint.close('done');
    await settle();
    expect(server.endpoint.clientCount).toBe(0);
    await advanceUntil(server.clock, () => second.ups.length === 1);
    expect(second.ups[0]).toMatchObject({ knownClient: false, summary: { sessions: 1, lostSessions: 0 } });
    const atServerSecond = await server.session(1);
    await settle();
    expect((atServerSecond.read() as Buffer | null)?.toString('utf8')).toBe('queued until there is room');
    expect(second.errorsOf(waiting)).toEqual([]);
  });

  it('maxPendingLinks: 2 refuses a third connection that has not said HELLO, at once', async () => {
    const server = new TestServer({ maxPendingLinks: 2 });
    server.stranger('stranger-1');
    server.stranger('stranger-2');
    expect(server.endpoint.pendingLinkCount).toBe(2);
    expect(server.linkDowns).toEqual([]);

    const third = new FaultyPair();
    third.a.on('error', () => {});
    third.a.resume();
    server.endpoint.handleConnection(third.b, 'stranger-3');
    // Synchronously: no timer, no I/O needed.
    expect(third.b.destroyed).toBe(true);
    expectOneRefusedLink(server, 'stranger-3', LimitError, 'ETCP_ERR_LIMIT', 'too many connections without HELLO (limit 2)');
    expect(server.endpoint.pendingLinkCount).toBe(2);
    await settle();
    expect(third.a.destroyed).toBe(true);

    // The two strangers time out without HELLO; then a client gets in.
    await server.clock.advance(server.endpoint.config.deadAfterMs);
    expect(server.endpoint.pendingLinkCount).toBe(0);
    // Silent strangers: the handshake deadline and the dead-link deadline fall due together.
    expect(server.linkDowns.map((d) => d.peer)).toEqual(['stranger-3', 'stranger-1', 'stranger-2']);
    for (const down of server.linkDowns.slice(1)) expect(['ETCP_ERR_HANDSHAKE', 'ETCP_ERR_LINK_DEAD']).toContain(down.error.code);
    const client = new TestClient(server, 'client');
    await client.nextUp();
    await openedSession(client);
  });
});
