/**
 * Echo probes through a path to the bench's target (bench/peers/target.ts, which echoes once a
 * connection's first byte is 'e'): a 1-byte ping-pong that records round trips, and a long-lived
 * probe whose send() resolves when its byte comes back (for resume after a fault).
 */
import { connect, type Socket } from 'node:net';
import { HOST, nowMs, withTimeout } from '../harness/system.js';

/** Connects to `port`, asks the target for echo, and resolves once connected. */
export function openEcho(port: number, timeoutMs = 10_000): Promise<Socket> {
  return withTimeout(
    new Promise<Socket>((resolvePromise, reject) => {
      const socket = connect({ host: HOST, port, noDelay: true });
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        socket.write('e');
        resolvePromise(socket);
      });
    }),
    timeoutMs,
    `connect to ${port}`,
  );
}

/**
 * 1-byte ping-pong on a fresh connection: `warmup` rounds not recorded, then up to `rounds`
 * recorded, stopping early at `deadlineMs`. Returns round-trip times in milliseconds.
 */
export async function pingPong(
  port: number,
  rounds: number,
  warmup: number,
  deadlineMs = 60_000,
  hooks: { afterWarmup?: () => void; atEnd?: () => void } = {},
): Promise<number[]> {
  const socket = await openEcho(port);
  const samples: number[] = [];
  const stopAt = Date.now() + deadlineMs;
  const byte = Buffer.from('p');
  try {
    await withTimeout(
      new Promise<void>((resolvePromise, reject) => {
        let done = 0;
        let t0 = 0;
        socket.on('error', reject);
        socket.on('close', () => reject(new Error('connection closed during ping-pong')));
        socket.on('data', (chunk: Buffer) => {
          const t = nowMs();
          if (chunk.length !== 1) {
            reject(new Error(`ping-pong: got ${chunk.length} bytes at once`));
            return;
          }
          if (done >= warmup) samples.push(t - t0);
          done++;
          if (done >= warmup + rounds || Date.now() > stopAt) {
            hooks.atEnd?.();
            resolvePromise();
            return;
          }
          if (done === warmup) hooks.afterWarmup?.();
          t0 = nowMs();
          socket.write(byte);
        });
        t0 = nowMs();
        socket.write(byte);
      }),
      deadlineMs + 10_000,
      'ping-pong',
    );
  } finally {
    socket.removeAllListeners('close');
    socket.destroy();
  }
  return samples;
}

/** One long-lived echo connection; send() resolves with the time its byte came back. */
export class EchoProbe {
  readonly socket: Socket;
  readonly #waiters: { resolve: (t: number) => void; reject: (e: Error) => void }[] = [];
  #closed: Error | null = null;

  constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      const t = nowMs();
      for (let i = 0; i < chunk.length; i++) this.#waiters.shift()?.resolve(t);
    });
    const fail = (error: Error): void => {
      this.#closed ??= error;
      for (const waiter of this.#waiters.splice(0)) waiter.reject(error);
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('probe connection closed')));
  }

  static async open(port: number): Promise<EchoProbe> {
    return new EchoProbe(await openEcho(port));
  }

  send(): Promise<number> {
    if (this.#closed !== null) return Promise.reject(this.#closed);
    return new Promise((resolvePromise, reject) => {
      this.#waiters.push({ resolve: resolvePromise, reject });
      this.socket.write('k');
    });
  }

  close(): void {
    this.socket.destroy();
  }
}
