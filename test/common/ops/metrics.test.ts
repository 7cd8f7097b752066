import { describe, expect, it } from 'vitest';
import { METRIC_PREFIX, ProxyMetrics, slowestPath, type PathReading, type ScrapeSources } from '../../../common/ops/metrics.js';
import { createTrafficCounts, type TrafficCounts } from '../../../common/engine/traffic-counts.js';
import { Scrape } from '../../helpers/prometheus.js';

/** Sources a test sets by hand, as the endpoint's state and counts would be at a scrape. */
interface FakeSources extends ScrapeSources {
  state: { linksUp: number; sessionsOpen: number; path: PathReading | null };
  counts: TrafficCounts;
}

function fakeSources(): FakeSources {
  const state: FakeSources['state'] = { linksUp: 0, sessionsOpen: 0, path: null };
  const counts = createTrafficCounts();
  return { state, counts, linksUp: () => state.linksUp, sessionsOpen: () => state.sessionsOpen, traffic: () => counts, path: () => state.path };
}

async function scrapeOf(metrics: ProxyMetrics): Promise<Scrape> {
  return new Scrape(await metrics.text());
}

const name = (suffix: string): string => `${METRIC_PREFIX}${suffix}`;

describe('ProxyMetrics', () => {
  it('starts at zero, with every session finish reason a series already, and says which program it is', async () => {
    const metrics = new ProxyMetrics('sproxy', '1.2.3', fakeSources());
    const scrape = await scrapeOf(metrics);
    expect(metrics.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(scrape.value(name('info'), { program: 'sproxy', version: '1.2.3' })).toBe(1);
    for (const counter of ['resumes_total', 'sessions_opened_total', 'payload_sent_bytes_total', 'payload_received_bytes_total', 'resent_packets_total', 'auth_failures_total']) {
      expect(scrape.family(name(counter)).type, counter).toBe('COUNTER');
      expect(scrape.value(name(counter)), counter).toBe(0);
    }
    expect(scrape.byLabel(name('sessions_closed_total'), 'reason')).toEqual({ closed: 0, 'reset-by-peer': 0, 'reset-sent': 0, lost: 0 });
    expect(scrape.family(name('link_downs_total')).metrics).toEqual([]);
    expect(scrape.histogram(name('resume_downtime_seconds')).count).toBe(0);
    // Every name has the prefix: a dashboard finds them all under it.
    expect([...scrape.families.keys()].filter((family) => !family.startsWith(METRIC_PREFIX))).toEqual([]);
  });

  it('counts what it is told: link downs by code, resumes and their downtime, finished sessions by reason, authentication failures', async () => {
    const metrics = new ProxyMetrics('cproxy', '0.1.0', fakeSources());
    metrics.linkDown('ETCP_ERR_LINK_DEAD');
    metrics.linkDown('ETCP_ERR_LINK_CLOSED');
    metrics.linkDown('ETCP_ERR_LINK_DEAD');
    metrics.linkUp(false, null); // a new client, not a resume
    metrics.linkUp(true, 80);
    metrics.linkUp(true, 7000);
    metrics.linkUp(true, null); // resumed with no downtime seen (a second link took over)
    metrics.sessionFinished('closed');
    metrics.sessionFinished('lost');
    metrics.sessionFinished('closed');
    metrics.authenticationFailed();

    const scrape = await scrapeOf(metrics);
    expect(scrape.byLabel(name('link_downs_total'), 'reason')).toEqual({ ETCP_ERR_LINK_DEAD: 2, ETCP_ERR_LINK_CLOSED: 1 });
    expect(scrape.value(name('resumes_total'))).toBe(3);
    const downtime = scrape.histogram(name('resume_downtime_seconds'));
    expect(downtime.count).toBe(2);
    expect(downtime.sum).toBeCloseTo(7.08, 6);
    expect(downtime.buckets['0.05']).toBe(0);
    expect(downtime.buckets['0.1']).toBe(1);
    expect(downtime.buckets['5']).toBe(1);
    expect(downtime.buckets['10']).toBe(2);
    expect(downtime.buckets['+Inf']).toBe(2);
    expect(scrape.byLabel(name('sessions_closed_total'), 'reason')).toEqual({ closed: 2, 'reset-by-peer': 0, 'reset-sent': 0, lost: 1 });
    expect(scrape.value(name('auth_failures_total'))).toBe(1);
  });

  it('reads the proxy\'s own counts and state afresh at each scrape', async () => {
    const sources = fakeSources();
    const metrics = new ProxyMetrics('sproxy', '0.1.0', sources);
    Object.assign(sources.counts, { sessionsOpened: 3, payloadBytesSent: 123_456, payloadBytesReceived: 7, resentPackets: 2 });
    Object.assign(sources.state, { linksUp: 2, sessionsOpen: 1 });
    let scrape = await scrapeOf(metrics);
    expect(scrape.value(name('sessions_opened_total'))).toBe(3);
    expect(scrape.value(name('payload_sent_bytes_total'))).toBe(123_456);
    expect(scrape.value(name('payload_received_bytes_total'))).toBe(7);
    expect(scrape.value(name('resent_packets_total'))).toBe(2);
    expect(scrape.value(name('links_up'))).toBe(2);
    expect(scrape.value(name('sessions_open'))).toBe(1);

    sources.counts.payloadBytesSent += 1000;
    Object.assign(sources.state, { linksUp: 0, sessionsOpen: 0 });
    scrape = await scrapeOf(metrics);
    expect(scrape.value(name('payload_sent_bytes_total'))).toBe(124_456);
    expect(scrape.value(name('links_up'))).toBe(0);
    expect(scrape.value(name('sessions_open'))).toBe(0);
  });

  it('shows the path in seconds and bytes per second, and nothing for what was not measured', async () => {
    const sources = fakeSources();
    const metrics = new ProxyMetrics('cproxy', '0.1.0', sources);
    let scrape = await scrapeOf(metrics);
    expect(scrape.family(name('link_rtt_seconds')).metrics).toEqual([]);
    expect(scrape.family(name('link_rate_bytes_per_second')).metrics).toEqual([]);

    sources.state.path = { rttMs: 52.5, rateBitsPerSecond: null };
    scrape = await scrapeOf(metrics);
    expect(scrape.value(name('link_rtt_seconds'))).toBeCloseTo(0.0525, 9);
    expect(scrape.family(name('link_rate_bytes_per_second')).metrics).toEqual([]);

    sources.state.path = { rttMs: 52.5, rateBitsPerSecond: 20e6 };
    scrape = await scrapeOf(metrics);
    expect(scrape.value(name('link_rate_bytes_per_second'))).toBe(2.5e6);

    // The link went down: the gauges go rather than keep showing the last path.
    sources.state.path = null;
    scrape = await scrapeOf(metrics);
    expect(scrape.family(name('link_rtt_seconds')).metrics).toEqual([]);
  });
});

describe('slowestPath', () => {
  it('takes the longest round trip and the lowest rate among the paths, each on its own; null with none', () => {
    expect(slowestPath([])).toBeNull();
    expect(
      slowestPath([
        { minRttMs: 10, rateBitsPerSecond: 5e6, ackTimeoutMs: null },
        { minRttMs: 200, rateBitsPerSecond: 50e6, ackTimeoutMs: null },
        { minRttMs: null, rateBitsPerSecond: null, ackTimeoutMs: null },
      ]),
    ).toEqual({ rttMs: 200, rateBitsPerSecond: 5e6 });
    expect(slowestPath([{ minRttMs: null, rateBitsPerSecond: null, ackTimeoutMs: null }])).toEqual({ rttMs: null, rateBitsPerSecond: null });
  });
});
