import type { Socket } from 'node:net';
import { describeError, type Logger } from './logger.js';
import type { Session } from './session.js';

/**
 * Splices a local TCP socket (the user's app, or the target) and a session: bytes both ways with
 * backpressure, a FIN in either direction passed on as a FIN (half-close), and an abort on
 * either side passed on as an abort (RST locally, RESET to the peer). The socket must have been
 * created with `allowHalfOpen: true`, or Node would close it at the first FIN.
 */
export function bridgeSocket(socket: Socket, session: Session, logger: Logger, label: Record<string, unknown>): void {
  socket.setNoDelay(true);
  socket.pipe(session);
  session.pipe(socket);
  socket.on('error', (error) => {
    logger.debug({ ...label, reason: describeError(error) }, 'local socket error');
    // Tell the peer, whose application gets an abort too; queued bytes before it are still delivered.
    session.destroy(new Error(`peer socket error: ${describeError(error)}`));
  });
  socket.on('close', () => {
    // Closed while the session still had data or a FIN to deliver to it: nothing can take it now.
    if (!session.destroyed && !(session.writableEnded && session.readableEnded)) {
      session.destroy(new Error('local socket closed'));
    }
  });
  session.on('error', (error) => {
    logger.debug({ ...label, reason: describeError(error) }, 'session error');
    // An abort from the far side (reset, lost session) reaches the local app as an RST.
    if (!socket.destroyed) socket.resetAndDestroy();
  });
  session.on('close', () => {
    // A session finished cleanly ends its socket through the pipes; anything else aborts it.
    if (!socket.destroyed && !(session.readableEnded && session.writableFinished)) socket.resetAndDestroy();
  });
}
