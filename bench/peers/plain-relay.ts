/**
 * The baseline: a plain TCP relay in Node, with no framing, no acks and no retransmit queue.
 * Each accepted connection is piped both ways to a new connection to the target, half-close
 * included, Nagle off on both sockets (as cproxy and sproxy do). Two of these in a row are the
 * "plain two-hop Node relay" the tunnel is compared with.
 *
 *   node dist-bench/bench/peers/plain-relay.js LISTEN_PORT TARGET_HOST:TARGET_PORT
 */
import { connect, createServer, type Socket } from 'node:net';

const [listenArg, targetArg] = process.argv.slice(2);
const listenPort = Number(listenArg);
const targetMatch = /^(.+):(\d+)$/.exec(targetArg ?? '');
if (!Number.isInteger(listenPort) || targetMatch === null) {
  process.stderr.write('usage: plain-relay LISTEN_PORT TARGET_HOST:TARGET_PORT\n');
  process.exit(2);
}
const targetHost = targetMatch[1] as string;
const targetPort = Number(targetMatch[2]);

const server = createServer({ allowHalfOpen: true, noDelay: true }, (client: Socket) => {
  const upstream = connect({ host: targetHost, port: targetPort, allowHalfOpen: true, noDelay: true });
  client.pipe(upstream);
  upstream.pipe(client);
  const abort = (): void => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', abort);
  upstream.on('error', abort);
  // Both directions ended cleanly: pipe() has passed each FIN on; close when both sockets are done.
  client.on('close', () => {
    if (!upstream.destroyed && !(client.readableEnded && client.writableFinished)) upstream.destroy();
  });
  upstream.on('close', () => {
    if (!client.destroyed && !(upstream.readableEnded && upstream.writableFinished)) client.destroy();
  });
});
server.listen(listenPort, '127.0.0.1');
const stop = (): void => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
