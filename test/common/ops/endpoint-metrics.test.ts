import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { clientMetrics, countingRefusals, serverMetrics } from '../../../common/ops/endpoint-metrics.js';
import { METRIC_PREFIX, type ProxyMetrics } from '../../../common/ops/metrics.js';
import type { LinkServerHandlers } from '../../../common/transport/link-server.js';
import { settle } from '../../helpers/duplex-pair.js';
import { QUIET_TIMERS, Received, Rig } from '../../helpers/endpoint-rig.js';
import { Scrape } from '../../helpers/prometheus.js';

const name = (suffix: string): string => `${METRIC_PREFIX}${suffix}`;

async function scrapeOf(metrics: ProxyMetrics): Promise<Scrape> {
  return new Scrape(await metrics.text());
}

describe('the endpoints\' metrics', () => {
  it('follow a session\'s bytes, a lost link and its resume on both sides, counted by the endpoints and read at the scrape', async () => {
    const rig = Rig.memory({ client: { ...QUIET_TIMERS, reconnectBaseDelayMs: 1, reconnectMaxDelayMs: 1 }, server: QUIET_TIMERS });
    // Wired as the programs do, right after the endpoints are made.
    const atCproxy = clientMetrics(rig.client);
    const atSproxy = serverMetrics(rig.server);
    await rig.nextUp();
    await settle();
    for (const metrics of [atCproxy, atSproxy]) {
      const scrape = await scrapeOf(metrics);
      expect(scrape.value(name('links_up'))).toBe(1);
      expect(scrape.value(name('sessions_open'))).toBe(0);
      expect(scrape.value(name('resumes_total'))).toBe(0); // a new client: nothing to resume
    }
    // cproxy timed the handshake's round trip (0 ms on the manual clock): a path to show.
    expect((await scrapeOf(atCproxy)).value(name('link_rtt_seconds'))).toBe(0);

    const atClient = rig.open();
    const upstream = randomBytes(10_000);
    atClient.write(upstream);
    const atServer = await rig.serverSession(0);
    const atServerGot = new Received(atServer);
    await atServerGot.atLeast(upstream.length);
    const atClientGot = new Received(atClient);
    atServer.write(randomBytes(4_000));
    await atClientGot.atLeast(4_000);
    await settle();
    let cproxy = await scrapeOf(atCproxy);
    let sproxy = await scrapeOf(atSproxy);
    expect([cproxy.value(name('payload_sent_bytes_total')), cproxy.value(name('payload_received_bytes_total'))]).toEqual([10_000, 4_000]);
    expect([sproxy.value(name('payload_sent_bytes_total')), sproxy.value(name('payload_received_bytes_total'))]).toEqual([4_000, 10_000]);
    for (const scrape of [cproxy, sproxy]) {
      expect(scrape.value(name('sessions_opened_total'))).toBe(1);
      expect(scrape.value(name('sessions_open'))).toBe(1);
    }

    // Cut with bytes in flight: they are written again on the next link.
    await rig.clock.advance(1);
    atClient.write(randomBytes(50_000));
    rig.cut();
    await settle();
    cproxy = await scrapeOf(atCproxy);
    sproxy = await scrapeOf(atSproxy);
    for (const scrape of [cproxy, sproxy]) expect(scrape.byLabel(name('link_downs_total'), 'reason')).toEqual({ ETCP_ERR_LINK_CLOSED: 1 });
    const resumed = rig.ups.at(-1);
    expect(rig.ups).toHaveLength(2);
    expect(resumed?.summary.resentPackets).toBeGreaterThan(0);
    await atServerGot.atLeast(60_000);
    cproxy = await scrapeOf(atCproxy);
    sproxy = await scrapeOf(atSproxy);
    expect(cproxy.value(name('resent_packets_total'))).toBe(resumed?.summary.resentPackets);
    // Written on the cut link (and lost with it), then again on the new one: it counts twice where it was sent.
    expect(cproxy.value(name('payload_sent_bytes_total'))).toBe(10_000 + 2 * 50_000);
    expect(sproxy.value(name('payload_received_bytes_total'))).toBe(60_000);
    for (const scrape of [cproxy, sproxy]) {
      expect(scrape.value(name('resumes_total'))).toBe(1);
      expect(scrape.histogram(name('resume_downtime_seconds')).count).toBe(1);
      expect(scrape.value(name('links_up'))).toBe(1);
    }

    atClient.end();
    atServer.end();
    await settle();
    for (const metrics of [atCproxy, atSproxy]) {
      const scrape = await scrapeOf(metrics);
      expect(scrape.value(name('sessions_open'))).toBe(0);
      expect(scrape.value(name('sessions_closed_total'), { reason: 'closed' })).toBe(1);
    }
  });

  it('a link server\'s refusals are counted as refused links, the failed authentications also as such, health checks not at all, and all still handled as before', () => {
    const calls: string[] = [];
    const handlers: LinkServerHandlers = {
      onLink: () => calls.push('link'),
      onAuthFailure: (peer, reason) => calls.push(`auth ${peer} ${reason}`),
      onSilent: (peer, reason) => calls.push(`silent ${peer} ${reason}`),
      onConnection: () => true,
      onLimit: (peer, limit) => calls.push(`limit ${peer} ${limit}`),
      onProxyHeaderRefused: (peer, reason) => calls.push(`proxy header ${peer} ${reason}`),
      onHealthCheck: (peer, detail) => calls.push(`health check ${peer} ${detail}`),
    };
    expect(countingRefusals(handlers, null)).toBe(handlers);
    const rig = Rig.memory();
    const metrics = serverMetrics(rig.server);
    const counted = countingRefusals(handlers, metrics);
    counted.onAuthFailure('p:1', 'wrong key');
    counted.onAuthFailure('p:2', 'wrong key');
    counted.onSilent('p:3', 'said nothing');
    counted.onLimit('p:4', 128);
    counted.onProxyHeaderRefused?.('p:5', 'no PROXY header');
    counted.onHealthCheck?.('p:6', 'LOCAL');
    expect(calls).toEqual(['auth p:1 wrong key', 'auth p:2 wrong key', 'silent p:3 said nothing', 'limit p:4 128', 'proxy header p:5 no PROXY header', 'health check p:6 LOCAL']);
    return scrapeOf(metrics).then((scrape) => {
      expect(scrape.byLabel(name('link_downs_total'), 'reason')).toEqual({ ETCP_ERR_AUTH: 2, ETCP_ERR_HANDSHAKE: 2, ETCP_ERR_LIMIT: 1 });
      expect(scrape.value(name('auth_failures_total'))).toBe(2);
    });
  });
});
