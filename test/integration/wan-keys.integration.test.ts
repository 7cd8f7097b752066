import { execFileSync, type ChildProcess } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { WanHosts } from '../../netlab/wan-hosts.js';
import { useCleanup } from '../helpers/cleanup.js';
import { startCproxy, startSproxy, isLinkUp } from '../helpers/proxies.js';
import { secretFile } from '../helpers/secrets.js';
import { startWanPeer } from '../helpers/wan-peer.js';

const TARGET_PORT = 7000;
const LINK_PORT = 6200;

/** Polls `done` every 50 ms until it holds; fails with `what` after `limitMs`. */
async function waitUntil(done: () => boolean, limitMs: number, what: string): Promise<void> {
  const end = Date.now() + limitMs;
  while (!done()) {
    if (Date.now() > end) throw new Error(`not within ${limitMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * Keystrokes beside a bulk upload on one link, over an emulated 20 Mbit/s path with a 50 ms round
 * trip and a deep (200 ms) bottleneck queue. The keys go on the link's express lane, a second
 * connection, and the main lane's budget holds the bulk to about one bandwidth-delay product, so a
 * key waits behind a fraction of a round trip of bulk in the bottleneck, not behind a whole window
 * (2 MiB: 0.8 s of sending on this path) nor in the bulk's congestion window. Timing figures are
 * the benchmark's (`npm run bench -- --only wan`); this asserts the mechanism with a bound that a
 * window's worth of queue cannot meet.
 */
describe('keystrokes beside a bulk upload on a slow WAN (emulated, with a secret)', () => {
  const defer = useCleanup();

  it('come back within a few round trips, every one intact, while the bulk keeps the link busy; the logs give the path', async () => {
    const hosts = new WanHosts(`k${process.pid % 10_000}`);
    await hosts.open({ rateMbit: 20, delayMs: 25, queueMs: 200 });
    defer(() => hosts.close());
    const onHost = (ns: string, args: string[]): ChildProcess => startWanPeer(defer, ns, args).child;
    onHost(hosts.server, ['server', `127.0.0.1:${TARGET_PORT}`]);
    const { file } = secretFile(defer);
    const secret = ['--secret-file', file];
    const sproxy = await startSproxy(TARGET_PORT, secret, `${WanHosts.SERVER_ADDRESS}:${LINK_PORT}`, hosts.prefix(hosts.server));
    defer(() => sproxy.proc.stop());
    const cproxy = await startCproxy(`${WanHosts.SERVER_ADDRESS}:${LINK_PORT}`, secret, '127.0.0.1:5200', hosts.prefix(hosts.client));
    defer(() => cproxy.proc.stop());
    // The operator sees the path: the handshake's round trip at link-up (the path's is 50 ms).
    const up = await cproxy.proc.waitForLog(isLinkUp);
    expect(up['rttMs']).toBeGreaterThanOrEqual(50);
    expect(up['rttMs']).toBeLessThan(150);

    // The link is two connections: the main lane and the express lane the keys will take.
    const linkConnections = (): number =>
      execFileSync('ip', ['netns', 'exec', hosts.client, 'ss', '-Htn', 'state', 'established', `( dport = :${LINK_PORT} )`], { encoding: 'utf8' })
        .split('\n')
        .filter((line) => line.trim() !== '').length;
    await waitUntil(() => linkConnections() === 2, 5000, 'the express lane joins the link');

    const before = await hosts.stats();
    onHost(hosts.client, ['bulk', '127.0.0.1:5200', '12']);
    await new Promise((resolve) => setTimeout(resolve, 2500)); // the bulk fills the path first
    const keys = onHost(hosts.client, ['keys', '127.0.0.1:5200', '50', '80']);
    let out = '';
    keys.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
    await new Promise((resolve) => keys.once('exit', resolve));
    const after = await hosts.stats();

    const { samples, intact } = JSON.parse(out.trim()) as { samples: number[]; intact: boolean };
    expect(samples).toHaveLength(80);
    expect(intact).toBe(true);
    // The bulk was moving all along: the bottleneck carried at least half its rate upward.
    const seconds = 2.5 + 80 * 0.05;
    expect(((after.upload.deliveredBytes - before.upload.deliveredBytes) * 8) / seconds).toBeGreaterThan(10e6);
    // Seen: median ~70 ms (direct TCP beside a direct bulk: ~95 ms); a window's worth queued ahead
    // of each key gave a median of 750 ms.
    const sorted = [...samples].sort((x, y) => x - y);
    expect(sorted[Math.floor(sorted.length / 2)]).toBeLessThan(250);

    // A lost link: 'link down' says what the path was measured to be (the bulk filled it at
    // 20 Mbit/s), and the resume's 'link up' the new link's round trip.
    execFileSync('ip', ['netns', 'exec', hosts.server, 'ss', '-K', '-tn', 'state', 'established', `( sport = :${LINK_PORT} )`]);
    const down = await cproxy.proc.waitForLog((line) => line.msg === 'link down');
    expect(down['rttMs']).toBeGreaterThanOrEqual(50);
    expect(down['rateMbit']).toBeGreaterThan(10);
    expect(down['rateMbit']).toBeLessThan(25);
    const resumed = await cproxy.proc.waitForLog((line) => line.msg === 'link up: sessions resumed');
    expect(resumed['rttMs']).toBeGreaterThanOrEqual(50);
    await waitUntil(() => linkConnections() === 2, 5000, 'the resumed link gets an express lane of its own');
  }, 60_000);
});
