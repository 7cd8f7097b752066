/**
 * The benchmark's target service. The first byte a client sends picks what the connection does:
 *   'e'  echo every following byte back
 *   's'  sink: read and discard
 *   'g'  generate: send 256 KiB chunks as fast as the peer takes them, until it closes
 *   'c'  counted sink: read and discard; when the peer half-closes, answer
 *        {"bytes":N,"seconds":S} (from the first byte's arrival to the last's) and close: the
 *        rate an upload got at the receiver, whatever the buffers on the way held
 *
 *   node dist-bench/bench/peers/target.js PORT [HOST]     (HOST: default 127.0.0.1)
 */
import { createServer, type Socket } from 'node:net';

const port = Number(process.argv[2]);
const host = process.argv[3] ?? '127.0.0.1';
if (!Number.isInteger(port)) {
  process.stderr.write('usage: target PORT [HOST]\n');
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

/** Counts what arrives; on the peer's half-close, says how much and over how long, and closes. */
function countedSink(socket: Socket, first: Buffer): void {
  let bytes = first.length;
  const firstAt = performance.now();
  let lastAt = firstAt;
  socket.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
    lastAt = performance.now();
  });
  socket.once('end', () => socket.end(`${JSON.stringify({ bytes, seconds: (lastAt - firstAt) / 1000 })}\n`));
}

// Half-open allowed for the counted sink's answer; every other connection closes on the peer's end.
const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket: Socket) => {
  socket.on('error', () => socket.destroy());
  let mode = '';
  socket.once('end', () => {
    if (mode !== 'c') socket.end();
  });
  socket.once('data', (first: Buffer) => {
    mode = String.fromCharCode(first[0] as number);
    const rest = first.subarray(1);
    if (mode === 'c') {
      countedSink(socket, rest);
    } else if (mode === 'e') {
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
server.listen(port, host, 1024);
const stop = (): void => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
