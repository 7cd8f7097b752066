import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTemporarySecret } from '../../demo/temporary-secret.js';
import { ProxyProcess, startSproxy, type StartedProxy } from '../helpers/proxies.js';
import { LINK_PORT, waitForPort } from './pair.js';
import { HostCommand, describeResult, prepareSsh, sleep, sshClientOptions, waitUntil } from './ssh-support.js';
import { NUMBERED_LINE, TelnetSession } from './telnet-session.js';
import { TwoHosts, requireRoot } from './topology.js';

/**
 * Issue 18's acceptance: one cproxy with three -L (telnet, ssh, HTTP), one -R (an echo on the
 * client host, reached from the server host) and one -D (SOCKS, curl --socks5-hostname), all over
 * one link, which is killed 10 times and then changes the client's address, while each forward
 * carries a stream. Every stream must arrive whole; sproxy must see one client, never a new one.
 */

requireRoot();

const TELNET_LINES = 80;
const BODY_BYTES = 12 * 1024 * 1024;
const ROAMED_ADDRESS = '10.77.0.3';
const PORTS = { telnet: 5201, ssh: 5202, http: 5203, socks: 1080, reverse: 9000, clientEcho: 7000, httpServer: 8080 };
const REMOTE_LOOP = 'for i in $(seq 1 80); do echo N$i; sleep 0.15; done';

/** Streams 150 chunks of 32 KiB, 80 ms apart, to HOST:PORT and checks that all come back; prints "OK <sha256>" or why not. */
const ECHO_CLIENT = `
const net = require('node:net'), crypto = require('node:crypto');
const [host, port] = process.argv.slice(1); const sent = crypto.createHash('sha256'), got = crypto.createHash('sha256');
let sentBytes = 0, gotBytes = 0, chunks = 0;
const socket = net.connect({ host, port: Number(port) }, () => {
  const timer = setInterval(() => {
    const chunk = crypto.randomBytes(32 * 1024); sent.update(chunk); sentBytes += chunk.length; socket.write(chunk);
    if (++chunks === 150) clearInterval(timer);
  }, 80);
});
socket.on('data', (d) => { got.update(d); gotBytes += d.length; if (gotBytes === 150 * 32 * 1024) { const a = sent.digest('hex'), b = got.digest('hex'); console.log(a === b ? 'OK ' + a : 'MISMATCH'); socket.destroy(); } });
socket.on('error', (e) => { console.log('ERROR ' + e.message); process.exit(1); });
socket.on('close', () => { if (gotBytes !== 150 * 32 * 1024) { console.log('CLOSED after ' + gotBytes); process.exit(1); } });
`;

describe('many forwards both ways over one link, between two hosts, through kills and an address change', () => {
  let hosts: TwoHosts | undefined;
  let dir: string | undefined;
  let sproxy: StartedProxy | undefined;
  let cproxy: ProxyProcess | undefined;
  let telnet: TelnetSession | undefined;

  beforeEach(() => {
    hosts = new TwoHosts('fwd');
    hosts.create();
    dir = mkdtempSync(join(tmpdir(), 'etcp-e2e-fwd-'));
  });

  afterEach(async () => {
    try {
      telnet?.dispose();
      await cproxy?.stop();
      await sproxy?.proc.stop();
    } finally {
      await hosts?.destroy();
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
      hosts = dir = sproxy = cproxy = telnet = undefined;
    }
  });

  it('telnet, ssh and HTTP over -L, curl over -D and an echo over -R all arrive whole', async () => {
    const h = hosts as TwoHosts;
    const workDir = dir as string;
    // The server host: telnetd, sshd and an HTTP server on its loopback.
    h.spawn(h.server, ['socat', `TCP-LISTEN:23,bind=127.0.0.1,fork,reuseaddr`, 'EXEC:"/usr/sbin/telnetd -h -E /bin/sh",nofork']);
    const ssh = prepareSsh(workDir);
    h.spawn(h.server, ['/usr/sbin/sshd', '-D', '-e', '-f', ssh.config]);
    const body = randomBytes(BODY_BYTES);
    const bodyFile = join(workDir, 'body.bin');
    writeFileSync(bodyFile, body);
    const httpServer = `require('node:http').createServer((q, r) => require('node:fs').createReadStream(${JSON.stringify(bodyFile)}).pipe(r)).listen(${PORTS.httpServer}, '127.0.0.1')`;
    h.spawn(h.server, [process.execPath, '-e', httpServer]);
    // The client host: the echo the -R forward reaches.
    h.spawn(h.client, [process.execPath, '-e', `require('node:net').createServer((s) => s.pipe(s)).listen(${PORTS.clientEcho}, '127.0.0.1')`]);
    for (const [ns, port] of [[h.server, 23], [h.server, 22], [h.server, PORTS.httpServer], [h.client, PORTS.clientEcho]] as const) {
      await waitForPort(h, ns, port);
    }

    const secret = createTemporarySecret();
    sproxy = await startSproxy(
      23,
      ['--secret-file', secret.file, '--allow', '127.0.0.1:22', '--allow', '127.0.0.1:8080', '--allow', 'localhost:8080', '--allow-listen', `127.0.0.1:${PORTS.reverse}`],
      `${TwoHosts.SERVER_ADDRESS}:${LINK_PORT}`,
      h.prefix(h.server),
    );
    cproxy = new ProxyProcess(
      'cproxy',
      [
        '--server', `${TwoHosts.SERVER_ADDRESS}:${LINK_PORT}`, '--secret-file', secret.file, '--log-format', 'json', '--log-level', 'debug',
        '-L', `${PORTS.telnet}:127.0.0.1:23`, '-L', `${PORTS.ssh}:127.0.0.1:22`, '-L', `${PORTS.http}:127.0.0.1:${PORTS.httpServer}`,
        '-R', `${PORTS.reverse}:127.0.0.1:${PORTS.clientEcho}`, '-D', String(PORTS.socks),
      ],
      h.prefix(h.client),
    );
    await cproxy.waitForLog((line) => line.msg === 'remote forward listening on sproxy', 20_000);

    // Every stream starts, then the faults come while they run.
    telnet = new TelnetSession(h, { host: '127.0.0.1', port: PORTS.telnet, count: TELNET_LINES, intervalS: 0.2, silenceTimeoutS: 40 });
    const sshLoop = new HostCommand(h, h.client, ['ssh', '-p', String(PORTS.ssh), ...sshClientOptions(ssh), 'root@127.0.0.1', REMOTE_LOOP], 90_000);
    const overL = new HostCommand(h, h.client, ['curl', '-sS', '--limit-rate', '1M', '-o', join(workDir, 'over-l.bin'), `http://127.0.0.1:${PORTS.http}/`], 90_000);
    const overSocks = new HostCommand(
      h, h.client,
      ['curl', '-sS', '--limit-rate', '1M', '--socks5-hostname', `127.0.0.1:${PORTS.socks}`, '-o', join(workDir, 'over-socks.bin'), `http://localhost:${PORTS.httpServer}/`],
      90_000,
    );
    const reverse = new HostCommand(h, h.server, [process.execPath, '-e', ECHO_CLIENT, '127.0.0.1', String(PORTS.reverse)], 90_000);
    await waitUntil(() => sshLoop.stdout.includes('N3\n'), 30_000);

    let kills = 0;
    for (let round = 0; round < 10; round++) {
      const resumed = cproxy.waitForNextLog((line) => line.msg === 'link up: sessions resumed', 15_000, "'link up: sessions resumed'");
      const killed = h.killLink(LINK_PORT);
      if (killed > 0) {
        kills++;
        await resumed;
      } else {
        resumed.catch(() => undefined);
      }
      await sleep(300);
    }
    const roamedAt = Date.now();
    h.changeClientAddress(ROAMED_ADDRESS);
    await sproxy.proc.waitForLog(
      (line) => line.msg === 'link up: client resumed' && String(line['peer']).startsWith(`${ROAMED_ADDRESS}:`),
      20_000,
      `a resume from ${ROAMED_ADDRESS}`,
    );

    const [sshResult, overLResult, overSocksResult, reverseResult] = await Promise.all([sshLoop.result, overL.result, overSocks.result, reverse.result]);
    const telnetExit = await telnet.finish(60_000);
    const sha = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');
    const bodyHash = createHash('sha256').update(body).digest('hex');

    expect(kills, 'kills that hit an established link').toBeGreaterThanOrEqual(8);
    expect(sshResult.code, describeResult('ssh', sshResult)).toBe(0);
    expect(sshResult.stdout).toBe(Array.from({ length: 80 }, (_, i) => `N${i + 1}\n`).join(''));
    expect(overLResult.code, describeResult('curl over -L', overLResult)).toBe(0);
    expect(sha(join(workDir, 'over-l.bin'))).toBe(bodyHash);
    expect(overSocksResult.code, describeResult('curl over -D', overSocksResult)).toBe(0);
    expect(sha(join(workDir, 'over-socks.bin'))).toBe(bodyHash);
    expect(reverseResult.stdout.trim(), describeResult('the reverse echo', reverseResult)).toMatch(/^OK [0-9a-f]{64}$/);
    expect(telnet.failures, telnet.transcript()).toEqual([]);
    expect(telnet.numberedLines(), telnet.transcript()).toEqual(Array.from({ length: TELNET_LINES }, (_, i) => i + 1));
    expect(telnetExit.code).toBe(0);
    // The streams outlived the faults: some of each came after the address change.
    expect(telnet.lines.some((line) => NUMBERED_LINE.test(line.text) && line.atMs > roamedAt)).toBe(true);
    // One link: one client, resumed each time, never new again.
    expect(sproxy.proc.countLogs((line) => line.msg === 'link up: new client')).toBe(1);
    expect(cproxy.countLogs((line) => line.msg === 'session lost; closing the user connection')).toBe(0);
  }, 180_000);
});
