import type { Socket } from 'node:net';
import { formatHostPort } from '../common/transport/address.js';
import { connectTarget } from '../common/forwarding/connect-target.js';
import type { RemoteForward } from '../common/forwarding/forward-spec.js';
import type { ClientEndpoint } from '../common/endpoints/client-endpoint.js';
import { ListenStatus } from '../common/protocol/constants.js';
import type { Logger } from '../common/support/logger.js';

/**
 * cproxy's side of remote forwards (-R, PROTOCOL.md §4.12): asks sproxy to listen for each (on
 * every link, so that a listener sproxy lost is asked for again), logs its answers (a refusal
 * loudly, once per change), and connects each session sproxy opens to its forward's target.
 * Returns the sockets it connected, for shutdown.
 */
export function startRemoteForwards(forwards: readonly RemoteForward[], endpoint: ClientEndpoint, logger: Logger): Set<Socket> {
  const sockets = new Set<Socket>();
  const byNumber = new Map<number, RemoteForward>();
  const lastAnswer = new Map<number, string>();
  for (const forward of forwards) byNumber.set(endpoint.listenRemote(formatHostPort(forward.listen)), forward);
  const fieldsOf = (number: number): Record<string, unknown> => {
    const forward = byNumber.get(number);
    return forward === undefined ? { forward: number } : { remoteListen: formatHostPort(forward.listen), target: formatHostPort(forward.target) };
  };

  endpoint.on('listen-reply', (number, status, text) => {
    const answer = `${status}:${text}`;
    if (lastAnswer.get(number) === answer) return; // the same on a resumed link: said already
    lastAnswer.set(number, answer);
    if (status === ListenStatus.Listening) logger.info({ ...fieldsOf(number), listening: text }, 'remote forward listening on sproxy');
    else logger.error({ ...fieldsOf(number), status: ListenStatus[status] ?? status, reason: text }, 'remote forward refused by sproxy');
  });
  endpoint.on('listen-unsupported', (number) => {
    if (lastAnswer.get(number) === 'unsupported') return;
    lastAnswer.set(number, 'unsupported');
    logger.error({ ...fieldsOf(number) }, 'remote forward refused: sproxy is too old for -R (upgrade it)');
  });
  endpoint.on('remote-session', (session, open) => {
    const forward = byNumber.get(open.forward);
    const label = { session: session.id, from: open.origin, ...fieldsOf(open.forward) };
    if (forward === undefined) {
      logger.warn(label, 'remote session for a forward we never asked for: refused');
      session.on('error', () => {});
      session.destroy(new Error(`cproxy has no remote forward ${open.forward}`));
      return;
    }
    logger.info(label, 'remote session opened');
    const socket = connectTarget(session, forward.target, logger, label);
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  return sockets;
}
