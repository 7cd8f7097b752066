import { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import { formatHostPort } from '../transport/address.js';
import { readChunks } from '../transport/direct-reads.js';
import { describeError, type Logger } from '../support/logger.js';
import { SessionResetError } from '../support/errors.js';
import type { Session } from '../engine/session.js';
import { bridgeSocket } from './bridge.js';
import {
  acceptedGreetingReply,
  encodeReply,
  MAX_GREETING_BYTES,
  MAX_REQUEST_BYTES,
  parseGreeting,
  parseRequest,
  replyForReset,
  SocksReply,
} from './socks5.js';

/**
 * A client that has not finished its greeting and request within this time is dropped: a SOCKS
 * client sends both at once, so only a stuck or hostile one takes longer.
 */
export const SOCKS_HANDSHAKE_TIMEOUT_MS = 10_000;

/** Opens a session to "host:port" (the OPEN's target); throws if the target does not fit. */
export type OpenSession = (target: string) => Session;

/**
 * Serves one connection accepted on a dynamic forward (-D): the SOCKS5 greeting and CONNECT
 * request, then a session to the requested destination, answered once sproxy's target has
 * answered (sproxy acknowledges the OPEN only then, PROTOCOL.md §4.2): success, and the socket
 * spliced to the session; or the reply that sproxy's reason calls for (not allowed, refused,
 * unreachable), and the socket closed. Bad input is answered as RFC 1928 says where it can be, and
 * the socket closed; nothing it sends can reach past this connection.
 */
export function serveSocks(socket: Socket, openSession: OpenSession, logger: Logger, label: Record<string, unknown>): void {
  let received: Buffer = Buffer.alloc(0);
  let phase: 'greeting' | 'request' | 'connecting' = 'greeting';
  const timer = setTimeout(() => fail(`no SOCKS request within ${SOCKS_HANDSHAKE_TIMEOUT_MS} ms`, null), SOCKS_HANDSHAKE_TIMEOUT_MS);
  timer.unref();
  socket.on('error', (error) => {
    logger.debug({ ...label, reason: describeError(error) }, 'SOCKS client socket error');
  });
  socket.once('close', () => clearTimeout(timer));

  function fail(reason: string, reply: Buffer | null): void {
    clearTimeout(timer);
    stopReading();
    logger.warn({ ...label, reason }, 'SOCKS request refused');
    if (socket.destroyed) return;
    if (reply === null) socket.destroy();
    else endWith(reply);
  }

  /**
   * Sends the last reply and closes. Reading is stopped by then, so the client's FIN would never
   * be read and a half-open socket would stay in CLOSE_WAIT: it is destroyed once the reply is out.
   */
  function endWith(reply: Buffer): void {
    socket.end(reply, () => socket.destroy());
  }

  const stopReading = readChunks(socket, (chunk) => {
    received = received.length === 0 ? chunk : Buffer.concat([received, chunk]);
    if (phase === 'greeting') {
      const greeting = parseGreeting(received);
      if (greeting.kind === 'refused') return fail(greeting.reason, greeting.reply);
      if (greeting.kind === 'incomplete') return tooLong(MAX_GREETING_BYTES);
      socket.write(acceptedGreetingReply());
      received = received.subarray(greeting.length);
      phase = 'request';
    }
    if (phase !== 'request' || received.length === 0) return true;
    const request = parseRequest(received);
    if (request.kind === 'refused') return fail(request.reason, request.reply);
    if (request.kind === 'incomplete') return tooLong(MAX_REQUEST_BYTES);
    // Whatever came after the request is the application's first bytes: they follow the reply.
    const early = received.subarray(request.length);
    received = Buffer.alloc(0);
    phase = 'connecting';
    clearTimeout(timer);
    connect(formatHostPort(request.target), early);
    return false; // paused until the session is bridged
  });

  function tooLong(limit: number): boolean | void {
    if (received.length >= limit) return fail(`a SOCKS message longer than ${limit} bytes`, null);
    return true;
  }

  function connect(target: string, early: Buffer): void {
    let session: Session;
    try {
      session = openSession(target);
    } catch (error) {
      fail(`cannot ask for ${target}: ${describeError(error)}`, encodeReply(SocksReply.GeneralFailure));
      return;
    }
    const sessionLabel = { ...label, session: session.id, target };
    logger.info(sessionLabel, 'SOCKS session opened');
    const onSocketClose = (): void => {
      session.destroy();
    };
    socket.once('close', onSocketClose);
    const onSessionError = (error: Error): void => {
      socket.off('close', onSocketClose);
      const reply = error instanceof SessionResetError ? replyForReset(error.message) : SocksReply.GeneralFailure;
      logger.warn({ ...sessionLabel, reply: SocksReply[reply], reason: describeError(error) }, 'SOCKS CONNECT failed');
      if (!socket.destroyed) endWith(encodeReply(reply));
    };
    session.once('error', onSessionError);
    session.once('established', () => {
      session.off('error', onSessionError);
      socket.off('close', onSocketClose);
      if (socket.destroyed) {
        session.destroy();
        return;
      }
      socket.write(encodeReply(SocksReply.Succeeded));
      stopReading();
      bridgeSocket(socket, session, logger, sessionLabel);
      if (early.length === 0 || session.send(early, () => socket.resume())) socket.resume();
    });
  }
}
