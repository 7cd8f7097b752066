import type { Socket } from 'node:net';
import { MAX_PAYLOAD_BYTES } from './protocol/constants.js';
import { describeError, type Logger } from './logger.js';
import type { Session } from './session.js';

/**
 * Stream buffer level for the local sockets the proxies bridge (both directions). Node's default
 * (16 KiB) is smaller than a DATA frame: a frame delivered in two slices would pause the pipe
 * after the first, and the two would go out in two write calls instead of one writev.
 */
export const LOCAL_SOCKET_HIGH_WATER_BYTES = 2 * MAX_PAYLOAD_BYTES;

/**
 * Splices a local TCP socket (the user's app, or the target) and a session: bytes both ways with
 * backpressure, a FIN in either direction passed on as a FIN (half-close), and an abort on
 * either side passed on as an abort (RST locally, RESET to the peer). The socket must have been
 * created with `allowHalfOpen: true`, or Node would close it at the first FIN, and should have
 * LOCAL_SOCKET_HIGH_WATER_BYTES as its high-water mark.
 */
export function bridgeSocket(socket: Socket, session: Session, logger: Logger, label: Record<string, unknown>): void {
  socket.setNoDelay(true);
  socket.pipe(session);
  corkPerTick(session, socket);
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

/**
 * A DATA payload that TCP split across two reads of the link arrives as two slices (the decoder
 * does not copy it whole); corking the socket until the end of the tick hands both, and whatever
 * else that read delivered, to the kernel in one writev. Registered before the pipe's own 'data'
 * listener, so the cork is in place before its first write.
 */
function corkPerTick(session: Session, socket: Socket): void {
  let corked = false;
  const uncork = (): void => {
    corked = false;
    socket.uncork();
  };
  session.on('data', () => {
    if (corked || socket.destroyed) return;
    corked = true;
    socket.cork();
    process.nextTick(uncork);
  });
}
