import { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import { readChunks } from '../transport/direct-reads.js';
import { MAX_PAYLOAD_BYTES } from '../protocol/constants.js';
import { describeError, type Logger } from '../support/logger.js';
import type { Session } from '../engine/session.js';

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
  spliceBytes(socket, session);
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
    // A session finished cleanly ends its socket at the peer's FIN; anything else aborts it.
    if (!socket.destroyed && !(session.readableEnded && session.writableFinished)) socket.resetAndDestroy();
  });
}

/**
 * Bytes both ways with backpressure, as `socket.pipe(session).pipe(socket)` would move them but
 * without the stream layers in between (see Session.deliverTo):
 *  - socket to session: each read is queued at once; a full window pauses the socket until the
 *    peer's acks make room, and the socket's FIN becomes the session's once its bytes are queued.
 *  - session to socket: each DATA payload is written as it is decoded. One that TCP split across
 *    two link reads comes as two slices (the decoder does not copy it whole), written under one
 *    cork: one writev. A whole payload is one plain write, with no cork to pay for: a keystroke's
 *    round trip was ~3% quicker than with one cork per tick. A full socket holds the session's
 *    acks back until it drains.
 */
function spliceBytes(socket: Socket, session: Session): void {
  const resume = (): void => {
    socket.resume();
  };
  // A full window pauses the socket until `resume`.
  readChunks(socket, (chunk) => session.send(chunk, resume));
  socket.on('end', () => session.end());

  session.deliverTo({
    write: (payload) => {
      if (socket.destroyed) return true;
      if (Buffer.isBuffer(payload)) return socket.write(payload);
      if (payload.length === 1) return socket.write(payload[0] as Buffer);
      // A payload TCP split across link reads arrives in slices: one writev for all of them.
      socket.cork();
      let taken = true;
      for (const part of payload) taken = socket.write(part);
      socket.uncork();
      return taken;
    },
    end: () => {
      if (!socket.destroyed) socket.end();
    },
  });
  socket.on('drain', () => session.sinkDrained());
}
