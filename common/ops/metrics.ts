import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { EternalErrorCode } from '../support/errors.js';
import type { FinishReason } from '../engine/session.js';
import type { PathEstimate } from '../engine/send-scheduler.js';
import type { TrafficCounts } from '../engine/traffic-counts.js';

/** Every metric's name starts with this. */
export const METRIC_PREFIX = 'eternal_tcp_';

/**
 * The resume downtime histogram's buckets, in seconds: from a link killed and redialled at once
 * (tens of milliseconds) to a laptop asleep overnight, within the default resume window (a day).
 */
export const RESUME_DOWNTIME_BUCKETS_SECONDS: readonly number[] = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600];

/** Every way a session can finish: each is a series from the start, so that a rate over it never misses its first increase. */
const FINISH_REASONS: Record<FinishReason, null> = { closed: null, 'reset-by-peer': null, 'reset-sent': null, lost: null };

/** A link's path as the metrics show it; null for what was not measured. */
export interface PathReading {
  rttMs: number | null;
  rateBitsPerSecond: number | null;
}

/**
 * What the metrics read from the proxy when they are scraped, rather than counting as things
 * happen: values the endpoint keeps anyway, so that nothing is done per packet for the metrics.
 */
export interface ScrapeSources {
  /** Links up now: cproxy 0 or 1, sproxy the clients linked. */
  linksUp(): number;
  sessionsOpen(): number;
  traffic(): Readonly<TrafficCounts>;
  /** The path to show, or null while there is none (no link up). */
  path(): PathReading | null;
}

/**
 * The metrics of one proxy, in a registry of their own: what happened (counted by the record
 * methods, called from the endpoint's events) and what is (read from `sources` at each scrape).
 * Labels are few and bounded: an error code or a finish reason, never a client or a session.
 */
export class ProxyMetrics {
  readonly registry = new Registry();
  readonly #linkDowns: Counter<'reason'>;
  readonly #resumes: Counter;
  readonly #resumeDowntime: Histogram;
  readonly #sessionsClosed: Counter<'reason'>;
  readonly #authFailures: Counter;

  constructor(program: 'cproxy' | 'sproxy', version: string, sources: ScrapeSources) {
    const registers = [this.registry];
    const name = (suffix: string): string => `${METRIC_PREFIX}${suffix}`;
    new Gauge({
      name: name('info'),
      help: 'Always 1; its labels say which program and version this is',
      labelNames: ['program', 'version'],
      registers,
    }).set({ program, version }, 1);

    this.#linkDowns = new Counter({
      name: name('link_downs_total'),
      help:
        'Links that ended, by the error code that ended them (ETCP_ERR_LINK_DEAD, ETCP_ERR_LINK_CLOSED, ETCP_ERR_ADDRESS_GONE...), ' +
        'and connections refused before their handshake (ETCP_ERR_AUTH, ETCP_ERR_LIMIT, ETCP_ERR_HANDSHAKE)',
      labelNames: ['reason'],
      registers,
    });
    gaugedAtScrape(registers, name('links_up'), 'Links up now: on cproxy 0 or 1, on sproxy the clients linked', () => sources.linksUp());
    this.#resumes = new Counter({
      name: name('resumes_total'),
      help: 'Links that came up for a peer that still held our sessions: the sessions resumed',
      registers,
    });
    this.#resumeDowntime = new Histogram({
      name: name('resume_downtime_seconds'),
      help: 'How long the link was down before each resume (resumes where a link was seen down)',
      buckets: [...RESUME_DOWNTIME_BUCKETS_SECONDS],
      registers,
    });

    gaugedAtScrape(registers, name('sessions_open'), 'Sessions open now', () => sources.sessionsOpen());
    countedAtScrape(registers, name('sessions_opened_total'), 'Sessions opened, by either side', () => sources.traffic().sessionsOpened);
    this.#sessionsClosed = new Counter({
      name: name('sessions_closed_total'),
      help: 'Sessions finished, by how: closed (both ends finished), reset-by-peer, reset-sent, lost (the link did not come back in time, or the peer forgot it)',
      labelNames: ['reason'],
      registers,
    });
    for (const reason of Object.keys(FINISH_REASONS)) this.#sessionsClosed.inc({ reason }, 0);

    countedAtScrape(registers, name('payload_sent_bytes_total'), 'Payload bytes of DATA packets written on the link, every session together; a resume\'s resent packets count again', () => sources.traffic().payloadBytesSent);
    countedAtScrape(registers, name('payload_received_bytes_total'), 'Payload bytes of DATA packets read from the link, every session together; duplicates after a resume count too', () => sources.traffic().payloadBytesReceived);
    countedAtScrape(registers, name('resent_packets_total'), 'Packets written again after a resume because the peer had not acknowledged them', () => sources.traffic().resentPackets);

    this.#authFailures = new Counter({
      name: name('auth_failures_total'),
      help: 'Authentication failures: on cproxy each refusal of its secret or resume token by sproxy, on sproxy each peer that failed to authenticate',
      registers,
    });

    gaugedAtScrape(registers, name('link_rtt_seconds'), 'Fastest round trip the link measured (on sproxy, the longest of the linked clients\'); absent while no link is up or before a measurement', () => {
      const ms = sources.path()?.rttMs ?? null;
      return ms === null ? null : ms / 1000;
    });
    gaugedAtScrape(registers, name('link_rate_bytes_per_second'), 'Best recent delivery rate the link measured (on sproxy, the lowest of the linked clients\'); absent while no link is up or before a measurement', () => {
      const bits = sources.path()?.rateBitsPerSecond ?? null;
      return bits === null ? null : bits / 8;
    });
  }

  /**
   * Adds prom-client's process metrics under their usual names (process_cpu_seconds_total,
   * process_resident_memory_bytes, nodejs_gc_duration_seconds by kind, nodejs_eventloop_lag_seconds...),
   * which dashboards for Node services already chart. For a program: they describe the whole
   * process, and their observers (GC, event loop delay) run for as long as it does.
   */
  withProcessMetrics(): this {
    collectDefaultMetrics({ register: this.registry });
    return this;
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The metrics in the Prometheus text format, read now. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** A link ended, or a connection was refused before its handshake, for the reason `code`. */
  linkDown(code: EternalErrorCode): void {
    this.#linkDowns.inc({ reason: code });
  }

  /** A link came up. `resumed`: the peer still held our sessions; `downMs`: since the link was seen down, if it was. */
  linkUp(resumed: boolean, downMs: number | null): void {
    if (!resumed) return;
    this.#resumes.inc();
    if (downMs !== null) this.#resumeDowntime.observe(downMs / 1000);
  }

  sessionFinished(reason: FinishReason): void {
    this.#sessionsClosed.inc({ reason });
  }

  authenticationFailed(): void {
    this.#authFailures.inc();
  }
}

/**
 * A counter whose value is a count the proxy keeps anyway, read at each scrape (it only grows:
 * the counts it reads are never reset).
 */
function countedAtScrape(registers: Registry[], name: string, help: string, read: () => number): void {
  new Counter({
    name,
    help,
    registers,
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

/**
 * A gauge whose value is read at each scrape; absent while `read` gives null, rather than a made-up
 * 0 (or a NaN, which prom-client writes as "Nan").
 */
function gaugedAtScrape(registers: Registry[], name: string, help: string, read: () => number | null): void {
  new Gauge({
    name,
    help,
    registers,
    collect() {
      const value = read();
      if (value === null) this.remove();
      else this.set(value);
    },
  });
}

/**
 * What sproxy shows of its clients' paths in one series each, with no label per client: the
 * longest round trip and the lowest rate among them (not necessarily the same client's), the ones
 * to look at first. Null with no path; a figure no path measured stays null.
 */
export function slowestPath(paths: readonly PathEstimate[]): PathReading | null {
  if (paths.length === 0) return null;
  let rttMs: number | null = null;
  let rateBitsPerSecond: number | null = null;
  for (const path of paths) {
    if (path.minRttMs !== null) rttMs = Math.max(rttMs ?? path.minRttMs, path.minRttMs);
    if (path.rateBitsPerSecond !== null) rateBitsPerSecond = Math.min(rateBitsPerSecond ?? path.rateBitsPerSecond, path.rateBitsPerSecond);
  }
  return { rttMs, rateBitsPerSecond };
}
