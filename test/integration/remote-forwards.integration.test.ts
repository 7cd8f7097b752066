import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { useCleanup } from '../helpers/cleanup.js';
import { echoKillingEachRound } from '../helpers/faults.js';
import { isLinkUp, ProxyProcess, startSproxy, type LogLine, type StartedProxy } from '../helpers/proxies.js';
import { startEchoTarget, type TargetServer } from '../helpers/targets.js';

/** Quick liveness on both sides, so that a stopped cproxy is noticed in about a second. */
const FAST = ['--heartbeat-interval', '200', '--dead-after', '1000'];

const portOf = (address: unknown): number => Number(String(address).split(':').pop());

/** Reads exactly `count` bytes (or fewer if the connection ends first). */
function readBytes(socket: Socket, count: number): Promise<Buffer> {
  return new Promise((resolve) => {
    let got = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      got = Buffer.concat([got, chunk]);
      if (got.length >= count) finish();
    };
    const finish = (): void => {
      socket.off('data', onData);
      socket.off('close', finish);
      resolve(got);
    };
    socket.on('data', onData);
    socket.once('close', finish);
  });
}

async function connectTo(port: number): Promise<Socket> {
  const socket = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  socket.on('error', () => {});
  await once(socket, 'connect');
  return socket;
}

describe('remote forwards: cproxy -R, sproxy listening for the client', () => {
  const defer = useCleanup();

  /** sproxy (listening allowed on 127.0.0.1), an echo on the client's side, cproxy with one -R to it on any free port. */
  async function setUp(sproxyExtra: string[] = []): Promise<{ sproxy: StartedProxy; cproxy: ProxyProcess; echo: TargetServer; reversePort: number }> {
    const echo = await startEchoTarget();
    defer(() => echo.close());
    const sproxy = await startSproxy(1, ['--allow-listen', '127.0.0.1:*', ...FAST, ...sproxyExtra]);
    defer(() => sproxy.proc.stop());
    const cproxy = new ProxyProcess('cproxy', [
      '--server', `127.0.0.1:${sproxy.port}`, '-R', `0:127.0.0.1:${echo.port}`, '-R', '127.0.0.2:0:127.0.0.1:1',
      '--log-format', 'json', '--log-level', 'debug', ...FAST,
    ]);
    defer(() => cproxy.stop());
    await cproxy.waitForLog(isLinkUp);
    const listening = await cproxy.waitForLog((line: LogLine) => line.msg === 'remote forward listening on sproxy');
    return { sproxy, cproxy, echo, reversePort: portOf(listening['listening']) };
  }

  it('a connection to sproxy\'s port reaches the echo on the client\'s side, through 3 link kills; a -R sproxy does not allow is refused with a clear message', async () => {
    const { sproxy, cproxy, echo, reversePort } = await setUp();
    expect(listening(reversePort)).toBe(true);
    const user = await connectTo(reversePort);
    defer(() => user.destroy());
    const transfer = await echoKillingEachRound(user, sproxy.port, 3);
    expect(transfer.kills).toBe(3);
    expect(transfer.receivedHash).toBe(transfer.sentHash);
    expect(echo.sockets).toHaveLength(1);
    expect(sproxy.proc.countLogs((line) => line.msg === 'link up: new client')).toBe(1);
    // Each resumed link asks again; sproxy keeps the one listener, and cproxy says it once.
    expect(sproxy.proc.countLogs((line) => line.msg === 'remote forward listening')).toBe(1);
    expect(cproxy.countLogs((line) => line.msg === 'remote forward listening on sproxy')).toBe(1);

    // 127.0.0.2 is not in sproxy's --allow-listen.
    const refused = await cproxy.waitForLog((line) => line.msg === 'remote forward refused by sproxy');
    expect(refused).toMatchObject({ level: 50, status: 'NotAllowed', remoteListen: '127.0.0.2:0' });
    expect(String(refused['reason'])).toContain('--allow-listen');
  }, 60_000);

  it('a cproxy that restarted (a new client id) takes over the address its old self still holds on sproxy', async () => {
    const { sproxy, cproxy, echo, reversePort } = await setUp();
    await cproxy.crash(); // sproxy keeps the old client, and its listener, for its resume window
    await sproxy.proc.waitForLog((line) => line.msg === 'link down');
    const restarted = new ProxyProcess('cproxy', [
      '--server', `127.0.0.1:${sproxy.port}`, '-R', `${reversePort}:127.0.0.1:${echo.port}`, '--log-format', 'json', ...FAST,
    ]);
    defer(() => restarted.stop());
    await restarted.waitForLog((line) => line.msg === 'remote forward listening on sproxy');
    // sproxy's line comes through its own stderr, which may reach us after cproxy's.
    await sproxy.proc.waitForLog((line) => line.msg === 'remote forward taken over: its client is away', 5000);
    expect(sproxy.proc.countLogs((line) => line.msg === 'remote forward taken over: its client is away')).toBe(1);
    const user = await connectTo(reversePort);
    defer(() => user.destroy());
    const probe = randomBytes(10_000);
    const echoed = readBytes(user, probe.length);
    user.write(probe);
    expect((await echoed).equals(probe)).toBe(true);
  }, 60_000);

  it('while cproxy is away, a connection to the reverse port waits with its bytes and is served once cproxy is back; after the resume window the listener goes, with a log line', async () => {
    const { sproxy, cproxy, reversePort } = await setUp(['--resume-window', '4']);
    process.kill(cproxy.pid, 'SIGSTOP');
    let continued = false;
    defer(() => {
      if (!continued) process.kill(cproxy.pid, 'SIGCONT');
    });
    await sproxy.proc.waitForLog((line) => line.msg === 'link down', 10_000);
    const user = await connectTo(reversePort);
    defer(() => user.destroy());
    const payload = randomBytes(200_000);
    user.write(payload);
    await new Promise((resolve) => setTimeout(resolve, 500));
    process.kill(cproxy.pid, 'SIGCONT');
    continued = true;
    const echoed = await readBytes(user, payload.length);
    expect(echoed.equals(payload)).toBe(true);

    // Gone for good: after sproxy's resume window the client, and its listener, are dropped.
    await cproxy.crash();
    await sproxy.proc.waitForLog((line) => line.msg === 'remote forward closed: its client is gone', 15_000);
    expect(listening(reversePort)).toBe(false);
  }, 60_000);
});

/** Whether something listens on `port` (sproxy's listener), by the kernel's table (state 0A: LISTEN). */
function listening(port: number): boolean {
  const table = readFileSync('/proc/net/tcp', 'utf8');
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  return table.split('\n').some((line) => / 0A /.test(line) && line.includes(`:${hexPort} `));
}
