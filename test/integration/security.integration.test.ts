import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { useCleanup } from '../helpers/cleanup.js';
import { echoKillingEachRound } from '../helpers/faults.js';
import { secretFile } from '../helpers/secrets.js';
import { startTap, type Tap } from '../helpers/tap.js';
import { echoTransfer, waitClosed } from '../helpers/targets.js';
import { startTunnel } from '../helpers/tunnel.js';

const defer = useCleanup();

const errorCodes = (errors: Error[]): Array<string | undefined> => errors.map((error) => (error as NodeJS.ErrnoException).code);

describe('the link with a shared secret (TLS-PSK)', () => {
  it('carries sessions, and resumes them exactly once across link kills', async () => {
    const { file } = secretFile(defer);
    const args = ['--secret-file', file];
    const { target, sproxy, cproxy, connect: connectUser } = await startTunnel(defer, { sproxyArgs: args, cproxyArgs: args });
    const user = await connectUser();
    // Eight rounds of 1 MiB, the link killed while each one is in flight.
    const transfer = await echoKillingEachRound(user.socket, sproxy.port, 8);
    expect(transfer.receivedHash).toBe(transfer.sentHash);
    expect(transfer.kills).toBe(8);
    expect(user.errors).toEqual([]);
    expect(target.sockets).toHaveLength(1);
    expect(cproxy.proc.countLogs((l) => l.msg === 'link up: sessions resumed')).toBe(8);
    expect(cproxy.proc.logs.some((l) => l.msg.includes('no shared secret'))).toBe(false);
  });

  it.each([
    {
      name: 'a wrong secret',
      cproxyHasSecret: true,
      sproxySays: /^the client's key does not match this sproxy's secret \(is the same shared secret given to both\?\)/,
      cproxySays: /^TLS authentication with sproxy failed: our keys differ \(is the same shared secret given to both\?\)/,
    },
    {
      name: 'no secret at all',
      cproxyHasSecret: false,
      sproxySays: /^spoke the plain protocol; this sproxy requires TLS with the shared secret$/,
      cproxySays: /^sproxy refused the link: sproxy requires TLS with a shared secret/,
    },
  ])('with $name on cproxy: no session, each side names the cause, user connections close promptly', async (expected) => {
    const server = secretFile(defer);
    const client = secretFile(defer);
    const { target, sproxy, cproxy } = await startTunnel(defer, {
      sproxyArgs: ['--secret-file', server.file],
      cproxyArgs: expected.cproxyHasSecret ? ['--secret-file', client.file] : [],
      waitForLink: false,
    });
    // One user connects at once, while cproxy may still be finding out; another after it gave up.
    const early = userConnection(cproxy.port);
    const failure = await sproxy.proc.waitForLog((l) => l.msg === 'authentication failed');
    expect(String(failure['peer'])).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(String(failure['reason'])).toMatch(expected.sproxySays);
    const gaveUp = await cproxy.proc.waitForLog((l) => l.msg === 'authentication with sproxy failed');
    expect(gaveUp.level).toBe(50); // error
    expect(String(gaveUp['reason'])).toMatch(expected.cproxySays);

    const late = userConnection(cproxy.port);
    for (const user of [await early, await late]) {
      expect(user.errors).toEqual(['ECONNRESET']);
    }
    // cproxy refuses at once once it has given up (the early one waited for the failures too).
    expect((await late).closedAfterMs).toBeLessThan(3000);
    expect(target.sockets).toHaveLength(0);
    expect(sproxy.proc.countLogs((l) => l.msg === 'session opened')).toBe(0);
  });
});

/** A user connection to cproxy that writes at once; resolves when it closes, with how and how soon. */
async function userConnection(port: number): Promise<{ errors: Array<string | undefined>; closedAfterMs: number }> {
  const startedAt = Date.now();
  const socket = connect({ host: '127.0.0.1', port });
  defer(() => socket.destroy());
  const errors: Error[] = [];
  socket.on('error', (error) => errors.push(error));
  socket.write('this must never reach the target');
  // Not events.once: it would reject on the 'error' that comes with the reset. The reset may come
  // before or after 'connect'.
  await new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return { errors: errorCodes(errors), closedAfterMs: Date.now() - startedAt };
}

describe('refused peers', () => {
  it('do not keep their unauthenticated slots: a good cproxy gets in after many refusals', async () => {
    const { file } = secretFile(defer);
    const { sproxy } = await startTunnel(defer, {
      sproxyArgs: ['--secret-file', file, '--max-unauthenticated', '2'],
      cproxyArgs: ['--secret-file', file],
    });
    // Plain-protocol peers that never read the GOAWAY nor close: sproxy must let go of them.
    const idle: Socket[] = [];
    defer(() => idle.forEach((socket) => socket.destroy()));
    for (let i = 0; i < 6; i++) {
      const socket = connect({ host: '127.0.0.1', port: sproxy.port, allowHalfOpen: true });
      idle.push(socket);
      socket.on('error', () => {});
      socket.on('connect', () => socket.write(Buffer.alloc(72)));
    }
    // Two get the slots and are refused for their plain HELLO; the rest are refused at the limit.
    await sproxy.proc.waitForLog((l) => l.msg === 'authentication failed');
    await sproxy.proc.waitForLog((l) => l.msg === 'connection refused: limit reached');
    // Only if those two slots are given back can another cproxy ever get in.
    const late = await startTunnel(defer, { cproxyArgs: ['--secret-file', file], via: async () => sproxy.port });
    const user = await late.connect();
    const echo = await echoTransfer(user.socket, 1000);
    expect(echo.receivedHash).toBe(echo.sentHash);
  });
});

describe('what an eavesdropper on the link sees', () => {
  async function tappedTunnel(): Promise<{ tap: Tap; secret: string; run: () => Promise<void>; targetConnections: () => number; sproxyPort: number; sproxyLogs: () => Array<{ msg: string; [k: string]: unknown }> }> {
    const { file, secret } = secretFile(defer);
    const args = ['--secret-file', file];
    let tap: Tap | null = null;
    const tunnel = await startTunnel(defer, {
      sproxyArgs: args,
      cproxyArgs: args,
      via: async (sproxyPort) => {
        tap = await startTap(defer, sproxyPort);
        return tap.port;
      },
    });
    return {
      tap: tap as unknown as Tap,
      secret,
      sproxyPort: tunnel.sproxy.port,
      targetConnections: () => tunnel.target.sockets.length,
      sproxyLogs: () => tunnel.sproxy.proc.logs,
      run: async () => {
        const user = await tunnel.connect();
        const marker = Buffer.from('PLAINTEXT-MARKER-4f1d2c');
        const reply = once(user.socket, 'data');
        user.socket.write(Buffer.concat(Array.from({ length: 100 }, () => marker)));
        await reply;
        user.socket.end();
        await waitClosed(user);
      },
    };
  }

  it('never sees the user\'s plaintext nor the secret', async () => {
    const { tap, secret, run } = await tappedTunnel();
    await run();
    const seen = tap.all();
    expect(seen.length).toBeGreaterThan(1000);
    expect(seen.includes(Buffer.from('PLAINTEXT-MARKER-4f1d2c'))).toBe(false);
    expect(seen.includes(Buffer.from('MARKER'))).toBe(false);
    expect(seen.includes(Buffer.from(secret))).toBe(false);
  });

  it('cannot replay a recorded handshake: sproxy refuses it and nothing reaches the target', async () => {
    const { tap, run, targetConnections, sproxyPort, sproxyLogs } = await tappedTunnel();
    await run();
    const connectionsBefore = targetConnections();
    const recorded = Buffer.concat(tap.clientToServer[0] ?? []);
    expect(recorded.length).toBeGreaterThan(0);

    const replay: Socket = connect({ host: '127.0.0.1', port: sproxyPort });
    defer(() => replay.destroy());
    replay.on('error', () => {});
    await once(replay, 'connect');
    const failuresBefore = sproxyLogs().filter((l) => l.msg === 'authentication failed').length;
    replay.write(recorded);
    replay.resume();
    await once(replay, 'close');
    expect(sproxyLogs().filter((l) => l.msg === 'authentication failed').length).toBe(failuresBefore + 1);
    expect(targetConnections()).toBe(connectionsBefore);
  });
});

describe('limits', () => {
  it('resets a session beyond --max-sessions-per-client and leaves the others alone', async () => {
    const { cproxy, sproxy, connect: connectUser } = await startTunnel(defer, { sproxyArgs: ['--max-sessions-per-client', '2'] });
    const first = await connectUser();
    const second = await connectUser();
    await echoTransfer(first.socket, 1000);
    await echoTransfer(second.socket, 1000);
    const third = await connectUser();
    await waitClosed(third);
    expect(errorCodes(third.errors)).toEqual(['ECONNRESET']);
    await sproxy.proc.waitForLog((l) => l.msg === 'session refused: too many sessions for this client');
    const closed = await cproxy.proc.waitForLog((l) => l.msg === 'session refused by sproxy' && l['reason'] === 'reset-by-peer');
    expect(String(closed['detail'])).toContain('too many sessions for this client (limit 2)');
    // The first two are unharmed.
    const again = await echoTransfer(first.socket, 1000);
    expect(again.receivedHash).toBe(again.sentHash);
  });

  it('lets cproxy --target reach only what sproxy --allow lists', async () => {
    const other = await startTunnel(defer); // an echo service to be allowed
    const allowedPort = other.target.port;
    const { cproxy: refusedCproxy, connect: connectRefused } = await startTunnel(defer, { cproxyArgs: ['--target', '127.0.0.1:1'] });
    const refused = await connectRefused();
    await waitClosed(refused);
    await refusedCproxy.proc.waitForLog((l) => l.msg === 'session refused by sproxy' && String(l['detail']).includes('not allowed'));

    const { connect: connectAllowed, target } = await startTunnel(defer, {
      sproxyArgs: ['--allow', `127.0.0.1:${allowedPort}`],
      cproxyArgs: ['--target', `127.0.0.1:${allowedPort}`],
    });
    const allowed = await connectAllowed();
    const echo = await echoTransfer(allowed.socket, 10_000);
    expect(echo.receivedHash).toBe(echo.sentHash);
    // It went to the allowed service, not to this tunnel's default target.
    expect(target.sockets).toHaveLength(0);
    expect(other.target.sockets).toHaveLength(1);
  });
});

describe('a flood of unauthenticated connections', () => {
  it('leaves sproxy running in bounded memory while an authenticated session keeps working', async () => {
    const { file } = secretFile(defer);
    const args = ['--secret-file', file];
    const { sproxy, connect: connectUser } = await startTunnel(defer, { sproxyArgs: args, cproxyArgs: args });
    const user = await connectUser();
    await echoTransfer(user.socket, 10_000);
    const rssBefore = sproxy.proc.rssBytes();

    const silent: Socket[] = [];
    await Promise.all(
      Array.from({ length: 500 }, async () => {
        const socket = connect({ host: '127.0.0.1', port: sproxy.port });
        silent.push(socket);
        socket.on('error', () => {});
        await once(socket, 'connect').catch(() => {});
      }),
    );
    defer(() => silent.forEach((socket) => socket.destroy()));
    // While they hang there, the real session goes on.
    for (let round = 0; round < 5; round++) {
      const echo = await echoTransfer(user.socket, 256 * 1024);
      expect(echo.receivedHash).toBe(echo.sentHash);
    }
    const rssDuring = sproxy.proc.rssBytes();
    // The bound stated for 500 silent connections: under 64 MiB above the idle process.
    expect(rssDuring - rssBefore).toBeLessThan(64 * 1024 * 1024);
    await sproxy.proc.waitForLog(
      (l) => l.msg === 'connection refused: limit reached' && String(l['reason']).startsWith('too many unauthenticated connections'),
    );
    // The ones let in are cut at the handshake deadline (3 s).
    await sproxy.proc.waitForLog((l) => l.msg === 'authentication failed' && String(l['reason']).includes('no TLS handshake'), 10_000);
    expect(sproxy.proc.rawStderr).toEqual([]);
    expect(user.errors).toEqual([]);
    console.log(`500 silent connections: sproxy RSS ${(rssBefore / 2 ** 20).toFixed(0)} MiB before, ${(rssDuring / 2 ** 20).toFixed(0)} MiB during`);
  });
});

