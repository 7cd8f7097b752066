/**
 * The benchmark's target service. The first byte a client sends picks what the connection does:
 *   'e'  echo every following byte back
 *   's'  sink: read and discard
 *   'g'  generate: send 256 KiB chunks as fast as the peer takes them, until it closes
 *
 *   node dist-bench/peers/target.js PORT
 */
import { createServer, type Socket } from 'node:net';

const port = Number(process.argv[2]);
if (!Number.isInteger(port)) {
  process.stderr.write('usage: target PORT\n');
  process.exit(2);
}
const CHUNK = Buffer.alloc(256 * 1024, 0x5a);

function generate(socket: Socket): void {
  const pump = (): void => {
    while (!socket.destroyed && socket.write(CHUNK));
  };
  socket.on('drain', pump);
  pump();
}

const server = createServer({ allowHalfOpen: false, noDelay: true }, (socket: Socket) => {
  socket.on('error', () => socket.destroy());
  socket.once('data', (first: Buffer) => {
    const mode = String.fromCharCode(first[0] as number);
    const rest = first.subarray(1);
    if (mode === 'e') {
      if (rest.length > 0) socket.write(rest);
      socket.pipe(socket);
    } else if (mode === 's') {
      socket.resume();
    } else if (mode === 'g') {
      socket.resume();
      generate(socket);
    } else {
      socket.destroy();
    }
  });
});
server.maxConnections = 1_000_000;
server.listen(port, '127.0.0.1', 1024);
const stop = (): void => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
