import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { connect, createServer } from '../../common/index.js';
import type { Session } from '../../common/engine/session.js';
import { useCleanup } from '../helpers/cleanup.js';
import { killConnections } from '../helpers/faults.js';

const defer = useCleanup();

function digest(chunks: Buffer[]): string {
  return createHash('sha256').update(Buffer.concat(chunks)).digest('hex');
}

describe('the library: connect() and createServer()', () => {
  it('gives a stream that outlives killed connections and closes cleanly with its endpoint', async () => {
    const server = createServer({}, (stream) => stream.pipe(stream));
    defer(() => server.close());
    const { port } = await server.listen(0);

    const stream: Session = connect({ host: '127.0.0.1', port });
    defer(() => stream.destroy());
    const received: Buffer[] = [];
    let receivedBytes = 0;
    let onProgress = (): void => {};
    stream.on('data', (chunk: Buffer) => {
      received.push(chunk);
      receivedBytes += chunk.length;
      onProgress();
    });
    const echoed = (bytes: number): Promise<void> =>
      new Promise((resolve) => {
        onProgress = () => {
          if (receivedBytes >= bytes) resolve();
        };
        onProgress();
      });
    const ended = once(stream, 'end');
    const closed = once(stream, 'close');

    const sent: Buffer[] = [];
    let kills = 0;
    for (let round = 0; round < 10; round++) {
      const chunk = randomBytes(200_000);
      // The stream copies what it is given: reusing the buffer afterwards must not matter.
      sent.push(Buffer.from(chunk));
      stream.write(chunk);
      chunk.fill(0);
      // The previous round's echo came back, so the link is up: kill it with this round in flight.
      await new Promise((resolve) => setImmediate(resolve));
      kills += killConnections(port) > 0 ? 1 : 0;
      await echoed(200_000 * (round + 1));
    }
    expect(kills).toBeGreaterThanOrEqual(5);
    stream.end();
    await ended;
    expect(digest(received)).toBe(digest(sent));
    await closed;
  });

  it('with a shared secret: streams flow over TLS-PSK, and a wrong secret is refused', async () => {
    const secret = Buffer.from('library test secret, long enough');
    const server = createServer({ secret }, (stream) => {
      stream.on('error', () => {}); // closing the server ends the stream with an error
      stream.pipe(stream);
    });
    defer(() => server.close());
    const failures: string[] = [];
    server.on('auth-failure', (peer) => failures.push(peer));
    const { port } = await server.listen(0);

    const good = connect({ host: '127.0.0.1', port, secret });
    defer(() => good.destroy());
    const echoed = once(good, 'data');
    good.write('over tls');
    expect(String((await echoed)[0])).toBe('over tls');

    const bad = connect({ host: '127.0.0.1', port, secret: Buffer.from('a different secret, long enough') });
    const error = once(bad, 'error');
    bad.write('never delivered');
    const [reason] = (await error) as [Error & { code?: string }];
    expect(reason.code).toBe('ETCP_ERR_SESSION_LOST');
    expect(reason.message).toContain('TLS authentication with sproxy failed');
    // The client gave up after three refusals in a row (one could be an attacker's injection).
    expect(failures.length).toBeGreaterThanOrEqual(3);
  });
});
