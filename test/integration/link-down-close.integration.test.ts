import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { useCleanup } from '../helpers/cleanup.js';
import { dropPackets, killConnections } from '../helpers/faults.js';
import { startSproxy } from '../helpers/proxies.js';
import { connectUser, echoTransfer, readToEnd, sha256, startTarget } from '../helpers/targets.js';
import { startTunnel } from '../helpers/tunnel.js';

const defer = useCleanup();

describe('the link is down', () => {
  it('a user who closes meanwhile: after the reconnect the far side gets every byte, then the close', async () => {
    const received: Buffer[] = [];
    const target = await startTarget((socket) => {
      void readToEnd(socket).then((data) => {
        received.push(data);
        socket.end();
      });
    });
    const { sproxy, cproxy, connect } = await startTunnel(defer, { target });
    const user = await connect();
    const head = randomBytes(100_000);
    user.socket.write(head);
    await sproxy.proc.waitForLog((l) => l.msg === 'session opened');

    // Take the path away (silently), and kill the link so that cproxy notices at once.
    const restore = dropPackets(sproxy.port);
    defer(restore);
    killConnections(sproxy.port);
    await cproxy.proc.waitForNextLog((l) => l.msg === 'link down');
    const tail = randomBytes(500_000);
    user.socket.end(tail);
    // cproxy keeps trying while the path is gone.
    await cproxy.proc.waitForNextLog((l) => l.msg === 'connect attempt failed', 10_000);
    expect(received).toHaveLength(0);

    restore();
    await readToEnd(user.socket);
    expect(received).toHaveLength(1);
    expect(sha256(received[0] as Buffer)).toBe(sha256(Buffer.concat([head, tail])));
    expect(user.errors).toEqual([]);
  });

  it('while sproxy is down, cproxy retries without a busy loop and holds new user connections', async () => {
    const { target, sproxy: first, cproxy } = await startTunnel(defer);
    await first.proc.stop();
    // Past or future: the first failure may come before sproxy's exit is seen, and its repeats collapse.
    await cproxy.proc.waitForLog((l) => l.msg === 'connect attempt failed');

    // Refused connects come back at once; only the backoff stands between cproxy and a hot loop.
    const cpuBefore = cproxy.proc.cpuMs();
    const wallBefore = Date.now();
    const user = await connectUser(cproxy.port);
    defer(() => user.socket.destroy());
    const transfer = echoTransfer(user.socket, 200_000);
    await new Promise((resolve) => setTimeout(resolve, 4000));
    const cpuShare = (cproxy.proc.cpuMs() - cpuBefore) / (Date.now() - wallBefore);
    expect(cpuShare).toBeLessThan(0.1);
    // One 'connecting' (debug) line per round of attempts: the failures' own lines collapse into counts.
    const attempts = cproxy.proc.countLogs((l) => l.msg === 'connecting');
    expect(attempts).toBeGreaterThan(2);
    expect(attempts).toBeLessThan(30);
    expect(user.closed).toBe(false);

    // sproxy comes back (a new process): the held session was never seen by it, so it opens now.
    const second = await startSproxy(target.port, [], `127.0.0.1:${first.port}`);
    defer(() => second.proc.stop());
    const result = await transfer;
    expect(result.receivedHash).toBe(result.sentHash);
    expect(user.errors).toEqual([]);
  });
});
