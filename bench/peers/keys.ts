/**
 * A typist in its own process (so that it can run on another host of the emulated WAN): one byte
 * every INTERVAL_MS to the target's echo, for SECONDS, each timed until its echo is back. Keys do
 * not wait for one another's echo, as a user does not. Prints {"samples":[ms,...],"lost":N,
 * "echoedAt":[epoch ms,...]} on stdout, N being the keys whose echo had not come back 2 s after
 * the last key was sent, echoedAt when each echo arrived (to date an echo against an outage).
 *
 *   node dist-bench/bench/peers/keys.js [HOST:]PORT INTERVAL_MS SECONDS
 */
import { connect } from 'node:net';

const [addressArg, intervalArg, secondsArg] = process.argv.slice(2);
const [host, portArg] = (addressArg ?? '').includes(':') ? (addressArg as string).split(':') : ['127.0.0.1', addressArg];
const port = Number(portArg);
const intervalMs = Number(intervalArg);
const seconds = Number(secondsArg);
if (!Number.isInteger(port) || !(intervalMs > 0) || !(seconds > 0)) {
  process.stderr.write('usage: keys [HOST:]PORT INTERVAL_MS SECONDS\n');
  process.exit(2);
}

const sentAt: number[] = [];
const samples: number[] = [];
const echoedAt: number[] = [];
const socket = connect({ host, port, noDelay: true });
socket.on('connect', () => {
  socket.write('e');
  const typing = setInterval(() => {
    sentAt.push(performance.now());
    socket.write('k');
  }, intervalMs);
  setTimeout(() => {
    clearInterval(typing);
    setTimeout(finish, 2000);
  }, seconds * 1000);
});
socket.on('data', (chunk: Buffer) => {
  const now = performance.now();
  const wall = Date.now();
  for (let i = 0; i < chunk.length; i++) {
    const t0 = sentAt.shift();
    if (t0 === undefined) continue;
    samples.push(now - t0);
    echoedAt.push(wall);
  }
});
socket.on('error', (error) => {
  process.stderr.write(`keys: ${error.message}\n`);
  finish();
});

function finish(): void {
  process.stdout.write(`${JSON.stringify({ samples: samples.map((s) => Math.round(s * 1000) / 1000), lost: sentAt.length, echoedAt })}\n`);
  socket.destroy();
  process.exit(0);
}
process.on('SIGTERM', finish);
