/**
 * A bulk transfer in its own process (so that it does not share an event loop with the latency
 * measurement): downloads from or uploads to the target service for a while, then prints
 * {"bytes":N,"seconds":S} on stdout: what arrived at the receiving end and over how long (an
 * upload's figure is the target's count, not what was handed to the socket: on a slow path the
 * buffers on the way hold seconds of it).
 *
 *   node dist-bench/bench/peers/bulk.js [HOST:]PORT download|upload SECONDS [MBIT_PER_S]
 *
 * With MBIT_PER_S, an upload is paced to that rate (64 KiB every few milliseconds) and a download
 * is read at that rate (the socket is paused in between), like a transfer limited by the network
 * rather than by the CPU.
 */
import { connect } from 'node:net';

const [addressArg, direction, secondsArg, rateArg] = process.argv.slice(2);
const [host, portArg] = (addressArg ?? '').includes(':') ? (addressArg as string).split(':') : ['127.0.0.1', addressArg];
const port = Number(portArg);
const seconds = Number(secondsArg);
const rateBytesPerMs = rateArg === undefined ? null : (Number(rateArg) * 1e6) / 8 / 1000;
if (!Number.isInteger(port) || (direction !== 'download' && direction !== 'upload') || !(seconds > 0)) {
  process.stderr.write('usage: bulk [HOST:]PORT download|upload SECONDS [MBIT_PER_S]\n');
  process.exit(2);
}
const CHUNK = Buffer.alloc(256 * 1024, 0x33);
let bytes = 0;
let started = 0;
let done = false;
const socket = connect({ host, port, noDelay: true });
socket.on('connect', () => {
  started = performance.now();
  if (rateBytesPerMs !== null) {
    paced(rateBytesPerMs);
  } else if (direction === 'download') {
    socket.write('g');
    socket.on('data', (chunk: Buffer) => (bytes += chunk.length));
  } else {
    socket.write('c');
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
    socket.write('c');
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
  if (direction === 'upload' && started !== 0 && !socket.destroyed) {
    // Half-close; the target answers with what it received once the last byte is in.
    let answer = '';
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString('utf8')));
    socket.once('end', () => report(answer.trim()));
    socket.end();
    setTimeout(() => report(''), 60_000).unref();
    return;
  }
  const elapsed = started === 0 ? 0 : (performance.now() - started) / 1000;
  report(JSON.stringify({ bytes, seconds: elapsed }));
}

function report(line: string): void {
  let result: { bytes: number; seconds: number; error?: string };
  try {
    result = JSON.parse(line) as { bytes: number; seconds: number };
  } catch {
    result = { bytes: 0, seconds: 0, error: `no count from the target (${JSON.stringify(line.slice(0, 100))})` };
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
  socket.destroy();
  process.exit(0);
}
process.on('SIGTERM', finish);
