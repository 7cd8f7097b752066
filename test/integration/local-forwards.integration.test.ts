import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { useCleanup } from '../helpers/cleanup.js';
import { echoKillingEachRound } from '../helpers/faults.js';
import { isLinkUp, ProxyProcess, startSproxy, type LogLine } from '../helpers/proxies.js';
import { connectUser, startTarget, type TargetServer } from '../helpers/targets.js';

/** A target that answers with its name and then echoes, so that a test can tell which one it reached. */
function namedEchoTarget(name: string): Promise<TargetServer> {
  return startTarget((socket: Socket) => {
    socket.write(`${name}\n`);
    socket.pipe(socket);
  });
}

const listenPort = (line: LogLine): number => Number(String(line['listen']).split(':').pop());

describe('local forwards: many -L over one link', () => {
  const defer = useCleanup();

  it('three forwards (sproxy\'s default and two -L) reach their own targets over one link, through 3 link kills each; a target not allowed is refused', async () => {
    const targets = await Promise.all(['default', 'db', 'web'].map(namedEchoTarget));
    for (const target of targets) defer(() => target.close());
    const [main, db, web] = targets as [TargetServer, TargetServer, TargetServer];
    const sproxy = await startSproxy(main.port, ['--allow', `127.0.0.1:${db.port}`, '--allow', `127.0.0.0/8:${web.port - 1}-${web.port}`]);
    defer(() => sproxy.proc.stop());
    const forbidden = await namedEchoTarget('forbidden');
    defer(() => forbidden.close());
    const cproxy = new ProxyProcess('cproxy', [
      '--server', `127.0.0.1:${sproxy.port}`, '--listen', '127.0.0.1:0', '--log-format', 'json', '--log-level', 'debug',
      '-L', `0:127.0.0.1:${db.port}`, '--local-forward', `127.0.0.1:0:127.0.0.1:${web.port}`, '-L', `0:127.0.0.1:${forbidden.port}`,
    ]);
    defer(() => cproxy.stop());
    await cproxy.waitForLog(isLinkUp);
    const listening = cproxy.logs.filter((line) => line.msg === 'cproxy listening; sessions go to sproxy');
    expect(listening).toHaveLength(4);
    expect(listening.map((line) => line['target'] ?? null)).toEqual([null, `127.0.0.1:${db.port}`, `127.0.0.1:${web.port}`, `127.0.0.1:${forbidden.port}`]);

    // Each forward's connection greets with its own target's name, then echoes through link kills.
    for (const [index, name] of ['default', 'db', 'web'].entries()) {
      const user = await connectUser(listenPort(listening[index] as LogLine));
      defer(() => user.socket.destroy());
      const greeting = await new Promise<string>((resolve) => user.socket.once('data', (chunk: Buffer) => resolve(chunk.toString('utf8'))));
      expect(greeting).toBe(`${name}\n`);
      const transfer = await echoKillingEachRound(user.socket, sproxy.port, 3);
      expect(transfer.kills).toBe(3);
      expect(transfer.receivedHash).toBe(transfer.sentHash);
      expect(user.errors).toEqual([]);
    }
    // One client, one link at a time: every kill was a resume of the same client, not a new one.
    expect(sproxy.proc.countLogs((line) => line.msg === 'link up: new client')).toBe(1);
    expect(sproxy.proc.countLogs((line) => line.msg === 'link up: client resumed')).toBeGreaterThanOrEqual(9);

    // A forward to a target sproxy does not allow: the connection is reset, nothing reaches it.
    // The reset may come before the connect is reported, so only the close is awaited.
    const refused = connect({ host: '127.0.0.1', port: listenPort(listening[3] as LogLine) });
    const received: Buffer[] = [];
    refused.on('error', () => {});
    refused.on('data', (chunk: Buffer) => received.push(chunk));
    await new Promise((resolve) => refused.once('close', resolve)); // events.once would reject on the reset
    expect(Buffer.concat(received).length).toBe(0);
    expect(forbidden.sockets).toHaveLength(0);
    await sproxy.proc.waitForLog((line) => line.msg === 'session refused: target not allowed' && line['target'] === `127.0.0.1:${forbidden.port}`);
    // And cproxy says why, with sproxy's reason.
    const closed = await cproxy.waitForLog((line) => line.msg === 'session refused by sproxy');
    expect(closed['level']).toBe(40);
    expect(String(closed['detail'])).toContain(`target 127.0.0.1:${forbidden.port} is not allowed by sproxy (see its --allow)`);
  }, 90_000);

  it("Tcpipe's form: sproxy --target appli2:P1 --ports P1,P2 and cproxy --ports P1,P2 carry each port to the same port of the target host", async () => {
    // The target host, appli2, is 127.0.0.2 here; cproxy listens on the same port numbers on 127.0.0.1.
    const appli2 = await Promise.all(['first', 'second'].map(async (name) => {
      const server = createServer((socket) => {
        socket.write(`${name}\n`);
        socket.pipe(socket);
      });
      server.listen(0, '127.0.0.2');
      await once(server, 'listening');
      defer(() => new Promise<void>((resolve) => server.close(() => resolve())));
      return (server.address() as AddressInfo).port;
    }));
    const [first, second] = appli2 as [number, number];
    const sproxy = await startSproxy(`127.0.0.2:${first}`, ['--ports', `${first},${second}`]);
    defer(() => sproxy.proc.stop());
    const cproxy = new ProxyProcess('cproxy', ['--server', `127.0.0.1:${sproxy.port}`, '--ports', `${first},${second}`, '--log-format', 'json']);
    defer(() => cproxy.stop());
    await cproxy.waitForLog(isLinkUp);
    for (const [port, name] of [[first, 'first'], [second, 'second']] as const) {
      const user = await connectUser(port);
      defer(() => user.socket.destroy());
      const greeting = await new Promise<string>((resolve) => user.socket.once('data', (chunk: Buffer) => resolve(chunk.toString('utf8'))));
      expect(greeting).toBe(`${name}\n`);
    }
  }, 30_000);

  it('a -L port already taken: cproxy exits 1 naming the address', async () => {
    const sproxy = await startSproxy(1);
    defer(() => sproxy.proc.stop());
    const taken = await startTarget(() => {});
    defer(() => taken.close());
    const cproxy = new ProxyProcess('cproxy', ['--server', `127.0.0.1:${sproxy.port}`, '--listen', '127.0.0.1:0', '-L', `${taken.port}:db:5432`]);
    defer(() => cproxy.stop());
    expect((await cproxy.exited).code).toBe(1);
    expect(cproxy.tail()).toContain(`127.0.0.1:${taken.port}`);
  }, 30_000);
});
