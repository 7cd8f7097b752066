import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer as createHttpServer } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { useCleanup } from '../helpers/cleanup.js';
import { echoKillingEachRound } from '../helpers/faults.js';
import { isLinkUp, ProxyProcess, startSproxy, type LogLine, type StartedProxy } from '../helpers/proxies.js';
import { startEchoTarget, startTarget, type TargetServer } from '../helpers/targets.js';

const run = promisify(execFile);

/** Reads exactly `count` bytes, or fewer if the connection ends first. */
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
      if (got.length > count) socket.unshift(got.subarray(count));
      resolve(got.subarray(0, count));
    };
    socket.on('data', onData);
    socket.once('close', finish);
  });
}

/** A CONNECT request to IPv4 `host` (dotted) or a domain name. */
function connectRequest(host: string, port: number): Buffer {
  const portBytes = Buffer.from([port >> 8, port & 0xff]);
  if (/^\d+\.\d+\.\d+\.\d+$/.test(host)) return Buffer.concat([Buffer.from([5, 1, 0, 1, ...host.split('.').map(Number)]), portBytes]);
  return Buffer.concat([Buffer.from([5, 1, 0, 3, host.length]), Buffer.from(host, 'latin1'), portBytes]);
}

/** Greets with "no authentication", sends `request`, and returns the socket with the method and reply bytes. */
async function socksExchange(port: number, request: Buffer): Promise<{ socket: Socket; method: number; reply: Buffer }> {
  const socket = connect({ host: '127.0.0.1', port });
  socket.on('error', () => {});
  await once(socket, 'connect');
  socket.write(Buffer.from([5, 1, 0]));
  const methodReply = await readBytes(socket, 2);
  socket.write(request);
  const reply = await readBytes(socket, 10);
  return { socket, method: methodReply[1] ?? -1, reply };
}

const closed = (socket: Socket): Promise<void> =>
  socket.destroyed ? Promise.resolve() : new Promise((resolve) => socket.once('close', () => resolve())); // events.once rejects on a reset

describe('dynamic forwards: cproxy -D is a SOCKS5 server over the link', () => {
  const defer = useCleanup();

  async function setUp(allow: string[]): Promise<{ sproxy: StartedProxy; cproxy: ProxyProcess; socksPort: number }> {
    const sproxy = await startSproxy(1, allow.flatMap((rule) => ['--allow', rule]));
    defer(() => sproxy.proc.stop());
    const cproxy = new ProxyProcess('cproxy', ['--server', `127.0.0.1:${sproxy.port}`, '-D', '127.0.0.1:0', '--log-format', 'json', '--log-level', 'debug']);
    defer(() => cproxy.stop());
    await cproxy.waitForLog(isLinkUp);
    const listening = await cproxy.waitForLog((line: LogLine) => line.msg === 'cproxy listening; sessions go to sproxy' && line['socks'] === true);
    return { sproxy, cproxy, socksPort: Number(String(listening['listen']).split(':').pop()) };
  }

  it('curl --socks5-hostname and --socks5 fetch a page through it; an echo through it survives link kills', async () => {
    const http = createHttpServer((request, response) => response.end(`hello from ${request.url ?? ''}\n`));
    http.listen(0, '127.0.0.1');
    await once(http, 'listening');
    defer(() => new Promise<void>((resolve) => http.close(() => resolve())));
    const httpPort = (http.address() as AddressInfo).port;
    const echo = await startEchoTarget();
    defer(() => echo.close());
    const { sproxy, socksPort } = await setUp([`localhost:${httpPort}`, `127.0.0.1:${httpPort}`, `127.0.0.1:${echo.port}`]);

    const byName = await run('curl', ['-sS', '--max-time', '20', '--socks5-hostname', `127.0.0.1:${socksPort}`, `http://localhost:${httpPort}/by-name`]);
    expect(byName.stdout).toBe('hello from /by-name\n');
    const byAddress = await run('curl', ['-sS', '--max-time', '20', '--socks5', `127.0.0.1:${socksPort}`, `http://127.0.0.1:${httpPort}/by-address`]);
    expect(byAddress.stdout).toBe('hello from /by-address\n');

    const { socket, method, reply } = await socksExchange(socksPort, connectRequest('127.0.0.1', echo.port));
    defer(() => socket.destroy());
    expect(method).toBe(0);
    expect(reply[1]).toBe(0);
    const transfer = await echoKillingEachRound(socket, sproxy.port, 3);
    expect(transfer.kills).toBe(3);
    expect(transfer.receivedHash).toBe(transfer.sentHash);
    expect(sproxy.proc.countLogs((line) => line.msg === 'link up: new client')).toBe(1);
  }, 90_000);

  it('answers what sproxy says: not allowed (02), refused (05), host unreachable (04); and what cproxy cannot serve: command (07), address type (08), no method (FF)', async () => {
    const forbidden = await startEchoTarget();
    defer(() => forbidden.close());
    // A port that refuses: listened on, then closed.
    const gone: TargetServer = await startTarget(() => {});
    const refusingPort = gone.port;
    await gone.close();
    const { cproxy, socksPort } = await setUp([`127.0.0.1:${refusingPort}`, `no-such-host.invalid:80`]);

    const notAllowed = await socksExchange(socksPort, connectRequest('127.0.0.1', forbidden.port));
    expect(notAllowed.reply[1]).toBe(0x02);
    await closed(notAllowed.socket);
    expect(forbidden.sockets).toHaveLength(0);

    // Without sproxy holding the OPEN's ack until its target answers, this would be 00, then a reset.
    const refused = await socksExchange(socksPort, connectRequest('127.0.0.1', refusingPort));
    expect(refused.reply[1]).toBe(0x05);
    await closed(refused.socket);

    const unresolvable = await socksExchange(socksPort, connectRequest('no-such-host.invalid', 80));
    expect(unresolvable.reply[1]).toBe(0x04);
    await closed(unresolvable.socket);

    const bind = await socksExchange(socksPort, Buffer.from([5, 2, 0, 1, 127, 0, 0, 1, 0, 80]));
    expect(bind.reply[1]).toBe(0x07);
    const oddAddress = await socksExchange(socksPort, Buffer.from([5, 1, 0, 9, 1, 2, 3, 4, 0, 80]));
    expect(oddAddress.reply[1]).toBe(0x08);

    const noMethod = connect({ host: '127.0.0.1', port: socksPort });
    noMethod.on('error', () => {});
    await once(noMethod, 'connect');
    noMethod.write(Buffer.from([5, 1, 2])); // username/password only
    expect([...(await readBytes(noMethod, 2))]).toEqual([5, 0xff]);
    await closed(noMethod);
    expect(cproxy.countLogs((line) => line.msg === 'SOCKS CONNECT failed')).toBe(3);
  }, 60_000);

  it('300 garbage and truncated connections neither crash cproxy nor disturb a SOCKS session beside them', async () => {
    const echo = await startEchoTarget();
    defer(() => echo.close());
    const { cproxy, socksPort } = await setUp([`127.0.0.1:${echo.port}`]);
    const { socket, reply } = await socksExchange(socksPort, connectRequest('127.0.0.1', echo.port));
    defer(() => socket.destroy());
    expect(reply[1]).toBe(0);

    const inputs = (index: number): Buffer => {
      switch (index % 5) {
        case 0: return randomBytes(1 + (index % 600)); // noise, sometimes longer than any SOCKS message
        case 1: return Buffer.from([5]); // a truncated greeting, then silence or a close
        case 2: return Buffer.from([5, 1, 0, 5, 1, 0, 3]); // a truncated request
        case 3: return Buffer.concat([Buffer.from([5, 1, 0, 5, 1, 0, 3, 255]), randomBytes(255), Buffer.from([0, 80])]); // a name of 255 random bytes
        default: return Buffer.from([4, 1, 0, 80, 127, 0, 0, 1, 0]); // SOCKS4
      }
    };
    await Promise.all(
      Array.from({ length: 300 }, async (_, index) => {
        const garbage = connect({ host: '127.0.0.1', port: socksPort });
        garbage.on('error', () => {});
        garbage.on('data', () => {});
        await once(garbage, 'connect');
        garbage.write(inputs(index));
        if (index % 2 === 0) garbage.end();
        // The rest wait for cproxy to close them, or are closed after a while.
        await Promise.race([closed(garbage), new Promise((resolve) => setTimeout(resolve, 2000))]);
        garbage.destroy();
      }),
    );
    // The session beside them still echoes, and nothing reached the target but its one connection.
    const probe = randomBytes(64 * 1024);
    const echoed = readBytes(socket, probe.length);
    socket.write(probe);
    expect((await echoed).equals(probe)).toBe(true);
    expect(echo.sockets).toHaveLength(1);
    expect(cproxy.exitCode).toBeNull();
  }, 60_000);
});
