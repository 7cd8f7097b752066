import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { useCleanup } from '../helpers/cleanup.js';
import { startTunnel } from '../helpers/tunnel.js';
import { isLinkUp, startCproxy, startSproxy } from '../helpers/proxies.js';
import { connectUser, echoTransfer, waitClosed } from '../helpers/targets.js';

const defer = useCleanup();

/** A port on which nothing listens (bound, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('sessions whose far side is gone', () => {
  it('closes the user connection promptly when the target refuses', async () => {
    const sproxy = await startSproxy(await closedPort());
    defer(() => sproxy.proc.stop());
    const cproxy = await startCproxy(sproxy.port);
    defer(() => cproxy.proc.stop());
    await cproxy.proc.waitForLog(isLinkUp);

    const user = await connectUser(cproxy.port);
    defer(() => user.socket.destroy());
    const openedAt = Date.now();
    await waitClosed(user);
    // Promptly: a round trip and a refused connect, far under the generous bound.
    expect(Date.now() - openedAt).toBeLessThan(5000);
    expect(user.errors.map((error) => (error as NodeJS.ErrnoException).code)).toEqual(['ECONNRESET']);
    const refused = await sproxy.proc.waitForLog((l) => l.msg === 'target refused the session');
    expect(String(refused['reason'])).toContain('ECONNREFUSED');
    const closed = await cproxy.proc.waitForLog((l) => l.msg === 'session refused by sproxy' && l['reason'] === 'reset-by-peer');
    expect(String(closed['detail'])).toContain('ECONNREFUSED');
  });

  it('after sproxy restarts, closes the user connections whose sessions are gone and serves new ones', async () => {
    const { target, sproxy: first, cproxy } = await startTunnel(defer);

    const user = await connectUser(cproxy.port);
    defer(() => user.socket.destroy());
    const before = await echoTransfer(user.socket, 64 * 1024);
    expect(before.receivedHash).toBe(before.sentHash);

    // A crash: no GOAWAY, no RESET, the state is simply gone.
    await first.proc.crash();
    const second = await startSproxy(target.port, [], `127.0.0.1:${first.port}`);
    defer(() => second.proc.stop());

    await waitClosed(user);
    // Reset, not a clean EOF: the application must not take a lost session for a finished one.
    expect(user.errors.map((error) => (error as NodeJS.ErrnoException).code)).toEqual(['ECONNRESET']);
    const lost = await cproxy.proc.waitForLog((l) => l.msg === 'session lost; closing the user connection');
    expect(String(lost['detail'])).toContain('sproxy no longer holds session');
    await cproxy.proc.waitForLog((l) => l.msg.startsWith('server does not know this client'));

    const fresh = await connectUser(cproxy.port);
    defer(() => fresh.socket.destroy());
    const after = await echoTransfer(fresh.socket, 64 * 1024);
    expect(after.receivedHash).toBe(after.sentHash);
    expect(fresh.errors).toEqual([]);
  });

  it('when sproxy shuts down (GOAWAY), cproxy closes its user connections at once instead of holding them', async () => {
    const { sproxy, cproxy, connect } = await startTunnel(defer);
    const user = await connect();
    await echoTransfer(user.socket, 1024);

    sproxy.proc.signal('SIGTERM');
    await waitClosed(user);
    const lost = await cproxy.proc.waitForLog((l) => l.msg === 'session lost; closing the user connection');
    expect(String(lost['detail'])).toBe('sproxy closed the link: sproxy shutting down');
    expect(await sproxy.proc.exited).toEqual({ code: 0, signal: null });
  });
});
