import type { Socket, TcpNetConnectOpts } from 'node:net';
import { formatHostPort, type HostPort } from '../transport/address.js';
import { connectWithDirectReads } from '../transport/direct-reads.js';
import { describeError, type Logger } from '../support/logger.js';
import type { Session } from '../engine/session.js';
import { bridgeSocket, LOCAL_SOCKET_HIGH_WATER_BYTES } from './bridge.js';

/** A target that has not accepted within this time is treated as refusing. */
export const TARGET_CONNECT_TIMEOUT_MS = 10_000;

/**
 * Connects a session the peer opened to its target: sproxy's sessions to their targets, cproxy's
 * remote forwards' sessions to theirs. Once the target accepts, the session's OPEN is confirmed
 * (the peer learns it answered, PROTOCOL.md §4.2) and the two are spliced; if it refuses or does
 * not answer, the session is destroyed with a reason naming the error, which the peer receives in
 * the RESET. A session that ends first (reset, lost) takes the connect attempt with it.
 */
export function connectTarget(session: Session, target: HostPort, logger: Logger, label: Record<string, unknown>): Socket {
  const targetName = formatHostPort(target);
  // Until the target answers, an error on the session (reset, lost) must not go unheard.
  const onEarlySessionError = (error: Error): void => {
    logger.debug({ ...label, reason: describeError(error) }, 'session ended before the target connected');
  };
  session.on('error', onEarlySessionError);
  // `highWaterMark` reaches the Socket's stream options; @types/node does not list it for connect().
  const connectOptions: TcpNetConnectOpts & { highWaterMark: number } = {
    host: target.host,
    port: target.port,
    allowHalfOpen: true,
    noDelay: true,
    highWaterMark: LOCAL_SOCKET_HIGH_WATER_BYTES,
  };
  // The target's reads go straight to the session (see connectWithDirectReads).
  const socket = connectWithDirectReads(connectOptions);
  const timer = setTimeout(
    () => socket.destroy(new Error(`no answer within ${TARGET_CONNECT_TIMEOUT_MS} ms`)),
    TARGET_CONNECT_TIMEOUT_MS,
  );
  const onSessionClose = (): void => {
    clearTimeout(timer);
    socket.destroy();
  };
  session.once('close', onSessionClose);
  let connected = false;
  socket.once('connect', () => {
    connected = true;
    clearTimeout(timer);
    session.off('close', onSessionClose);
    session.off('error', onEarlySessionError);
    session.confirmOpen();
    bridgeSocket(socket, session, logger, label);
  });
  socket.once('error', (error) => {
    clearTimeout(timer);
    if (!connected) {
      logger.warn({ ...label, target: targetName, reason: describeError(error) }, 'target refused the session');
      session.destroy(new Error(`target ${targetName} unreachable: ${describeError(error)}`));
    }
  });
  return socket;
}
