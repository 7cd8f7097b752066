import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { encodeProxyHeader, PROXY_V2_SIGNATURE, ProxyCommand, ProxyFamily } from '../../common/protocol/proxy-v2.js';
import { useCleanup } from '../helpers/cleanup.js';
import { HAPROXY_SOURCE_ADDRESS, sourcePortsOf, startHaproxy, type Haproxy } from '../helpers/haproxy.js';
import { isLinkUp, startCproxy, startSproxy, type LogLine, type StartedProxy } from '../helpers/proxies.js';
import { secretFile } from '../helpers/secrets.js';
import { connectUser, echoTransfer, startEchoTarget, type UserConnection } from '../helpers/targets.js';

const defer = useCleanup();

const isRejected = (peer: string) => (line: LogLine): boolean => line.msg === 'connection rejected' && line['peer'] === peer;
const isWarning = (line: LogLine): boolean => line.level >= 40;
const isHealthCheck = (line: LogLine): boolean => line.msg.startsWith('connection closed before a link');

/** sproxy with --proxy-protocol in front of an echo target; `linkArgs` the link's own (a secret, or none). */
async function startProxiedSproxy(linkArgs: string[], extra: string[] = []): Promise<StartedProxy> {
  const target = await startEchoTarget();
  defer(() => target.close());
  const sproxy = await startSproxy(target.port, ['--proxy-protocol', ...linkArgs, ...extra]);
  defer(() => sproxy.proc.stop());
  return sproxy;
}

async function startLinkedCproxy(serverPort: number, linkArgs: string[], waitForLink = true): Promise<StartedProxy> {
  const cproxy = await startCproxy(serverPort, linkArgs);
  defer(() => cproxy.proc.stop());
  if (waitForLink) await cproxy.proc.waitForLog(isLinkUp);
  return cproxy;
}

/** HAProxy in front of `sproxy`, cproxy linked through it, and a user's session that echoes `bytes`. */
async function echoThroughHaproxy(sproxy: StartedProxy, linkArgs: string[], bytes: number): Promise<{ haproxy: Haproxy; cproxy: StartedProxy; user: UserConnection }> {
  const haproxy = await startHaproxy(defer, sproxy.port);
  const cproxy = await startLinkedCproxy(haproxy.port, linkArgs);
  const user = await connectUser(cproxy.port);
  defer(() => user.socket.destroy());
  const echo = await echoTransfer(user.socket, bytes);
  expect(echo.receivedHash).toBe(echo.sentHash);
  return { haproxy, cproxy, user };
}

/** A raw connection to sproxy; `peer` is how sproxy names it. */
async function rawConnection(port: number): Promise<{ socket: Socket; peer: string; closed: Promise<unknown> }> {
  const socket = connect({ host: '127.0.0.1', port });
  defer(() => socket.destroy());
  socket.on('error', () => {}); // a reset is one way of being refused
  await once(socket, 'connect');
  socket.resume();
  // Not events.once: it rejects on 'error', and a reset is how some refusals end.
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return { socket, peer: `127.0.0.1:${socket.localPort}`, closed };
}

describe.each([
  { link: 'TLS-PSK', secret: true },
  { link: 'plain (--insecure on loopback)', secret: false },
])('sproxy --proxy-protocol behind HAProxy, $link link', ({ secret }) => {
  it("carries sessions, names cproxy's own address in its logs, refuses a direct connection, and keeps quiet about health checks", async () => {
    const linkArgs = secret ? ['--secret-file', secretFile(defer).file] : [];
    const sproxy = await startProxiedSproxy(secret ? linkArgs : ['--insecure']);
    const { haproxy, cproxy, user } = await echoThroughHaproxy(sproxy, linkArgs, 1024 * 1024);

    // HAProxy's view of cproxy: the source ports of cproxy's connections to it (the link and its
    // express lane). sproxy's TCP peer is HAProxy, from 127.0.0.3; its logs name 127.0.0.1.
    const cproxyPeers = sourcePortsOf(cproxy.proc.pid, haproxy.port).map((port) => `127.0.0.1:${port}`);
    expect(cproxyPeers.length).toBeGreaterThan(0);
    const linkUp = await sproxy.proc.waitForLog((l) => l.msg === 'link up: new client');
    expect(cproxyPeers).toContain(linkUp['peer']);
    const opened = await sproxy.proc.waitForLog((l) => l.msg === 'session opened');
    expect(cproxyPeers).toContain(opened['peer']);
    // Only HAProxy's own health checks (LOCAL headers) are named by the TCP peer.
    const peers = sproxy.proc.logs.filter((l) => typeof l['peer'] === 'string' && !isHealthCheck(l)).map((l) => String(l['peer']));
    expect(peers.length).toBeGreaterThanOrEqual(2);
    expect(peers.filter((peer) => peer.startsWith(`${HAPROXY_SOURCE_ADDRESS}:`))).toEqual([]);

    // cproxy dialing sproxy itself, past the load balancer: refused, with a warning that says why.
    const direct = await startLinkedCproxy(sproxy.port, linkArgs, false);
    const rejected = await sproxy.proc.waitForLog((l) => l.msg === 'connection rejected');
    expect(rejected.level).toBe(40);
    expect(String(rejected['peer'])).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(cproxyPeers).not.toContain(rejected['peer']);
    // TLS opens with a handshake record (0x16), the plain protocol with a packet type's 0x00.
    expect(String(rejected['reason'])).toMatch(new RegExp(`^no valid PROXY protocol v2 header: no PROXY protocol v2 signature \\(first bytes: ${secret ? '16' : '00'}`));
    await direct.proc.stop();

    // HAProxy checks sproxy every 200 ms, both ways: each check is a debug line at most.
    const isLocalCheck = (l: LogLine): boolean => isHealthCheck(l) && l['detail'] === 'closed after its PROXY header, before the link began';
    while (sproxy.proc.countLogs(isLocalCheck) < 5) await sproxy.proc.waitForNextLog(isLocalCheck);
    // The only warnings: the direct cproxy's attempts (it may have tried more than once).
    const isDirectRefusal = (l: LogLine): boolean => l.msg === 'connection rejected' && String(l['reason']).startsWith('no valid PROXY protocol v2 header');
    expect(sproxy.proc.logs.filter((l) => isWarning(l) && !isDirectRefusal(l))).toEqual([]);

    // The session is still up through all that.
    const again = await echoTransfer(user.socket, 64 * 1024);
    expect(again.receivedHash).toBe(again.sentHash);
    expect(user.errors).toEqual([]);
    expect(haproxy.output()).not.toMatch(/ALERT/);
  });
});

describe('sproxy --proxy-protocol and malformed headers', () => {
  it('refuses each bad header with a warning naming the connection and why, stays up, and serves a good client after', async () => {
    const { file } = secretFile(defer);
    const linkArgs = ['--secret-file', file];
    const sproxy = await startProxiedSproxy(linkArgs, ['--max-unauthenticated', '4']);
    const good = encodeProxyHeader({
      command: ProxyCommand.Proxy,
      family: ProxyFamily.Tcp4,
      source: { kind: 'ip', address: '192.0.2.7', port: 40000 },
      destination: { kind: 'ip', address: '198.51.100.1', port: 6200 },
      tlvs: [],
    });
    const withFixedPart = (versionCommand: number, family: number, length: number): Buffer => {
      const fixed = Buffer.from([versionCommand, family, 0, 0]);
      fixed.writeUInt16BE(length, 2);
      return Buffer.concat([PROXY_V2_SIGNATURE, fixed]);
    };
    const cases: Array<{ name: string; bytes: Buffer; reason: RegExp }> = [
      { name: 'random bytes', bytes: Buffer.concat([Buffer.from([0xff]), randomBytes(4096)]), reason: /^no valid PROXY protocol v2 header: no PROXY protocol v2 signature \(first bytes: ff/ },
      { name: 'version 1 (text)', bytes: Buffer.from('PROXY TCP4 192.0.2.7 198.51.100.1 40000 6200\r\n'), reason: /a PROXY protocol version 1 \(text\) header/ },
      { name: 'wrong version', bytes: withFixedPart(0x31, 0x11, 12), reason: /: PROXY header version 3, not 2$/ },
      { name: 'unknown command', bytes: withFixedPart(0x2f, 0x11, 12), reason: /: unknown PROXY header command 15$/ },
      { name: 'absurd length', bytes: withFixedPart(0x21, 0x11, 0xffff), reason: /: PROXY header of 65551 bytes, over the limit of 4096$/ },
      { name: 'length short of its addresses', bytes: withFixedPart(0x21, 0x21, 12), reason: /: PROXY header length 12 is shorter than the 36-byte address block/ },
      // Cut short: the rest never comes, and the connection closes.
      { name: 'truncated', bytes: good.subarray(0, 20), reason: /^closed 20 bytes into its PROXY protocol v2 header$/ },
    ];
    for (const testCase of cases) {
      const raw = await rawConnection(sproxy.port);
      raw.socket.write(testCase.bytes);
      if (testCase.name === 'truncated') raw.socket.end();
      await raw.closed;
      const logged = await sproxy.proc.waitForLog(isRejected(raw.peer), 10_000, `a warning for ${testCase.name}`);
      expect(logged.level, testCase.name).toBe(40);
      expect(logged['code'], testCase.name).toBe('ETCP_ERR_HANDSHAKE');
      expect(String(logged['reason']), testCase.name).toMatch(testCase.reason);
    }

    // Part of a header and then silence: refused at the handshake deadline (--dead-after, 3 s).
    const silent = await rawConnection(sproxy.port);
    silent.socket.write(good.subarray(0, 10));
    // Meanwhile they count against --max-unauthenticated (4): with three more waiting, the fifth is refused.
    const waiting = await Promise.all([1, 2, 3].map(() => rawConnection(sproxy.port)));
    const fifth = await rawConnection(sproxy.port);
    await fifth.closed;
    const limited = await sproxy.proc.waitForLog((l) => l.msg === 'connection refused: limit reached' && l['peer'] === fifth.peer);
    expect(String(limited['reason'])).toBe('too many unauthenticated connections (limit 4)');
    await silent.closed;
    const timedOut = await sproxy.proc.waitForLog(isRejected(silent.peer));
    expect(timedOut['reason']).toBe('no complete PROXY protocol v2 header within 3000 ms');
    for (const connection of waiting) await connection.closed;

    // As health checks do: a LOCAL header and a close, a close and nothing else. A debug line, no warning.
    const local = encodeProxyHeader({ command: ProxyCommand.Local, family: ProxyFamily.Unspec, source: null, destination: null, tlvs: [] });
    for (const [bytes, detail] of [
      [local, 'closed after its PROXY header, before the link began'],
      [Buffer.alloc(0), 'closed without sending anything'],
    ] as const) {
      const check = await rawConnection(sproxy.port);
      check.socket.end(bytes);
      await check.closed;
      const logged = await sproxy.proc.waitForLog((l) => isHealthCheck(l) && l['peer'] === check.peer);
      expect(logged.level).toBe(20);
      expect(logged['detail']).toBe(detail);
      expect(sproxy.proc.countLogs((l) => isWarning(l) && l['peer'] === check.peer)).toBe(0);
    }

    // sproxy is still there, and a client through HAProxy links and carries a session.
    expect(sproxy.proc.exitCode).toBeNull();
    expect(sproxy.proc.rawStderr).toEqual([]);
    await echoThroughHaproxy(sproxy, linkArgs, 256 * 1024);
  });
});
