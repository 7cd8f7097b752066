import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { connectWithDirectReads, DIRECT_READ_BUFFER_BYTES, directReadsOf, type DirectReads } from '../../common/direct-reads.js';
import { useCleanup } from '../helpers/cleanup.js';
import { startTarget, type TargetServer } from '../helpers/targets.js';

const cleanup = useCleanup();

async function target(onConnection: (socket: Socket) => void): Promise<TargetServer> {
  const server = await startTarget(onConnection);
  cleanup(() => server.close());
  return server;
}

/** Dials `server` with direct reads; resolves once the server has the connection too. */
async function dial(server: TargetServer): Promise<{ socket: Socket; reads: DirectReads; peer: Socket }> {
  const socket = connectWithDirectReads({ host: '127.0.0.1', port: server.port, allowHalfOpen: true });
  cleanup(() => socket.destroy());
  const reads = directReadsOf(socket);
  if (reads === undefined) throw new Error('no direct reads registered for the socket');
  await once(socket, 'connect');
  await waitFor(() => server.sockets.length > 0, 'the server to accept');
  return { socket, reads, peer: server.sockets[0] as Socket };
}

function waitFor(condition: () => boolean, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + 10_000;
    const poll = (): void => {
      if (condition()) resolve();
      else if (Date.now() > deadline) reject(new Error(`timed out waiting for ${what}`));
      else setTimeout(poll, 5);
    };
    poll();
  });
}

const total = (chunks: Buffer[]): number => chunks.reduce((sum, chunk) => sum + chunk.length, 0);

/** Attaches a consumer that keeps every chunk and answers `answer` (false: pause). */
function collect(reads: DirectReads, answer = true): Buffer[] {
  const chunks: Buffer[] = [];
  reads.attach((chunk) => {
    chunks.push(chunk);
    return answer;
  });
  return chunks;
}

describe('connectWithDirectReads', () => {
  it('hands every byte to the consumer in order, and a kept chunk is never overwritten by a later read', async () => {
    // Many full read buffers' worth: a reused buffer handed on without being replaced would show
    // up as chunks whose contents changed after they were delivered.
    const sent = randomBytes(DIRECT_READ_BUFFER_BYTES * 16 + 12_345);
    const server = await target((socket) => socket.end(sent));
    const { socket, reads } = await dial(server);
    const chunks = collect(reads);
    const ended = once(socket, 'end');
    await ended;
    expect(total(chunks)).toBe(sent.length);
    expect(Buffer.concat(chunks).equals(sent)).toBe(true);
    // A short read is copied out at its own size, not left pinning a whole read buffer.
    for (const chunk of chunks) {
      if (chunk.length < DIRECT_READ_BUFFER_BYTES) expect(chunk.buffer.byteLength).toBeLessThan(DIRECT_READ_BUFFER_BYTES);
    }
  });

  it("emits no 'data' and still emits 'end' at the peer's FIN, leaving the socket writable (half-close)", async () => {
    const server = await target((socket) => socket.end('bye'));
    const { socket, reads } = await dial(server);
    let dataEvents = 0;
    socket.on('data', () => dataEvents++);
    const chunks = collect(reads);
    await once(socket, 'end');
    expect(Buffer.concat(chunks).toString()).toBe('bye');
    expect(dataEvents).toBe(0);
    expect(socket.writable).toBe(true);
  });

  it('keeps what arrives before anyone attached, paused, and delivers it first on attach', async () => {
    const server = await target((socket) => socket.write('banner'));
    const socket = connectWithDirectReads({ host: '127.0.0.1', port: server.port, allowHalfOpen: true });
    cleanup(() => socket.destroy());
    await once(socket, 'connect');
    await sleep(100); // the banner is read meanwhile, with nobody to take it
    const reads = directReadsOf(socket);
    if (reads === undefined) throw new Error('no direct reads registered for the socket');
    const chunks = collect(reads);
    expect(Buffer.concat(chunks).toString()).toBe('banner');
    // Reading resumed: later bytes arrive too.
    server.sockets[0]?.write(' and more');
    await waitFor(() => Buffer.concat(chunks).toString() === 'banner and more', 'the bytes after the banner');
  });

  it('stops reading while the consumer says false, until resume()', async () => {
    const server = await target(() => {});
    const { socket, reads, peer } = await dial(server);
    const chunks = collect(reads, false);
    peer.write('first');
    await waitFor(() => chunks.length === 1, 'the first read');
    peer.write('second');
    await sleep(100);
    expect(chunks.map(String)).toEqual(['first']); // paused: nothing read since
    socket.resume();
    await waitFor(() => chunks.length === 2, 'the read after resume');
    expect(chunks.map(String)).toEqual(['first', 'second']);
  });

  it('drops reads after detach', async () => {
    const server = await target(() => {});
    const { reads, peer } = await dial(server);
    const chunks = collect(reads);
    peer.write('kept');
    await waitFor(() => chunks.length === 1, 'the first read');
    reads.detach();
    peer.write('dropped');
    await sleep(100);
    expect(chunks.map(String)).toEqual(['kept']);
  });

  it('is registered only for sockets it dialed', async () => {
    const server = await target(() => {});
    const plain = connect({ host: '127.0.0.1', port: server.port });
    cleanup(() => plain.destroy());
    expect(directReadsOf(plain)).toBeUndefined();
  });
});
