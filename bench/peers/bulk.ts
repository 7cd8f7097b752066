/**
 * A bulk transfer in its own process (so that it does not share an event loop with the latency
 * measurement): downloads from or uploads to the target service for a while, then prints
 * {"bytes":N,"seconds":S} on stdout.
 *
 *   node dist-bench/peers/bulk.js PORT download|upload SECONDS [MBIT_PER_S]
 *
 * With MBIT_PER_S, an upload is paced to that rate (64 KiB every few milliseconds) and a download
 * is read at that rate (the socket is paused in between), like a transfer limited by the network
 * rather than by the CPU.
 */
import { connect } from 'node:net';

const [portArg, direction, secondsArg, rateArg] = process.argv.slice(2);
const port = Number(portArg);
const seconds = Number(secondsArg);
const rateBytesPerMs = rateArg === undefined ? null : (Number(rateArg) * 1e6) / 8 / 1000;
if (!Number.isInteger(port) || (direction !== 'download' && direction !== 'upload') || !(seconds > 0)) {
  process.stderr.write('usage: bulk PORT download|upload SECONDS\n');
  process.exit(2);
}
const CHUNK = Buffer.alloc(256 * 1024, 0x33);
let bytes = 0;
let started = 0;
let done = false;
const socket = connect({ host: '127.0.0.1', port, noDelay: true });
socket.on('connect', () => {
  started = performance.now();
  if (rateBytesPerMs !== null) {
    paced(rateBytesPerMs);
  } else if (direction === 'download') {
    socket.write('g');
    socket.on('data', (chunk: Buffer) => (bytes += chunk.length));
  } else {
    socket.write('s');
    // Counted as handed to the socket: within one socket buffer of what arrived.
    const pump = (): void => {
      while (!done) {
        bytes += CHUNK.length;
        if (!socket.write(CHUNK)) return;
      }
    };
    socket.on('drain', pump);
    pump();
  }
  setTimeout(finish, seconds * 1000);
});
socket.on('error', (error) => {
  process.stderr.write(`bulk: ${error.message}\n`);
  finish();
});

/** Moves bytes at `perMs` on average: every 2 ms, catch up with the schedule. */
function paced(perMs: number): void {
  const PACE_CHUNK = Buffer.alloc(64 * 1024, 0x33);
  if (direction === 'download') {
    socket.write('g');
    socket.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > (performance.now() - started) * perMs) socket.pause();
    });
  } else {
    socket.write('s');
  }
  const timer = setInterval(() => {
    if (done) return clearInterval(timer);
    const due = (performance.now() - started) * perMs;
    if (direction === 'download') {
      if (bytes < due) socket.resume();
      return;
    }
    while (bytes + PACE_CHUNK.length <= due && socket.writableLength < 1024 * 1024) {
      bytes += PACE_CHUNK.length;
      socket.write(PACE_CHUNK);
    }
  }, 2);
}

function finish(): void {
  if (done) return;
  done = true;
  const elapsed = started === 0 ? 0 : (performance.now() - started) / 1000;
  process.stdout.write(`${JSON.stringify({ bytes, seconds: elapsed })}\n`);
  socket.destroy();
  process.exit(0);
}
process.on('SIGTERM', finish);
