/**
 * Round-trip latency: 1-byte ping-pong to the Node echo target, direct, through the plain relay
 * and through the tunnel, warmed up first (the proxies are long-running) and pooled over
 * alternated rounds with fresh proxies; and the data segments per round trip on the middle hop,
 * which shows pure ACK packets on the link. Target: tunnel p50 <= 1.2x the relay's.
 */
import { ms, ratio, table } from '../harness/format.js';
import { progress, results, say } from '../harness/report.js';
import type { BenchSection } from '../harness/section.js';
import { alternatedSchedule, summarize, type Percentiles } from '../harness/stats.js';
import { sleep } from '../harness/system.js';
import { TARGETS, addTarget } from '../harness/targets.js';
import { startNodeRelay, startTunnel, stopPath, type Path } from '../paths.js';
import { pingPong } from '../probes/echo.js';
import { dataSegments } from '../probes/link-sockets.js';

/**
 * Round trips before the recorded ones, on the same connection. The proxies are long-running:
 * what a user's session sees is their code once V8 has optimized it, which takes a few thousand
 * round trips (measured: over the first 5500 the tunnel's two proxies spent 186 us of CPU per
 * round trip, 120 us once warm; p50 1.27x the relay's instead of ~1.2x). Both paths get the same.
 */
const PINGPONG_WARMUP = 5000;
const PINGPONG_ROUNDS = 5000;
/** Runs per path of the ping-pong above (fresh proxies each), pooled. */
const LATENCY_ROUNDS = 3;

export const latency: BenchSection = { name: 'latency', run: ({ targetPort }) => measureLatency(targetPort) };

async function measureLatency(targetPort: number): Promise<void> {
  const setups: { key: string; label: string; start: () => Promise<Path> }[] = [
    { key: 'plain-relay', label: 'plain Node relay, 2 hops', start: () => startNodeRelay('lat-relay', targetPort) },
    { key: 'tunnel', label: 'tunnel, plain link', start: () => startTunnel('lat-tunnel', targetPort) },
  ];
  const samples: Record<string, number[]> = { direct: [], 'plain-relay': [], tunnel: [] };
  /** Data segments on the inner connection (link or middle hop) per round trip, each way. */
  const segments: Record<string, { out: number; in: number }> = {};
  progress('latency: direct');
  samples['direct'] = await pingPong(targetPort, PINGPONG_ROUNDS, PINGPONG_WARMUP);
  // LATENCY_ROUNDS alternated rounds, pooled.
  for (const [i, setup] of alternatedSchedule(setups, LATENCY_ROUNDS).entries()) {
    progress(`latency: ${setup.label} (round ${Math.floor(i / setups.length) + 1})`);
    const path = await setup.start();
    try {
      await sleep(200);
      let before = { out: 0, in: 0 };
      let after = { out: 0, in: 0 };
      const list = await pingPong(path.port, PINGPONG_ROUNDS, PINGPONG_WARMUP, 60_000, {
        afterWarmup: () => (before = dataSegments(path.innerPort as number)),
        atEnd: () => (after = dataSegments(path.innerPort as number)),
      });
      (samples[setup.key] as number[]).push(...list);
      // Includes the link's heartbeats (one a second each way), a handful in a run.
      segments[setup.key] = { out: (after.out - before.out) / list.length, in: (after.in - before.in) / list.length };
    } finally {
      await stopPath(path);
    }
  }
  const segs = (s: { out: number; in: number } | undefined): string => (s === undefined ? 'n/a' : `${s.out.toFixed(2)}+${s.in.toFixed(2)}`);
  const stats: Record<string, Percentiles> = {};
  for (const [key, list] of Object.entries(samples)) stats[key] = summarize(list);
  const relay = stats['plain-relay'] as Percentiles;
  const tunnel = stats['tunnel'] as Percentiles;
  const p50Ratio = tunnel.p50 / relay.p50;
  const p99Ratio = tunnel.p99 / relay.p99;
  results['latency'] = {
    warmup: PINGPONG_WARMUP, roundsPerRun: PINGPONG_ROUNDS, unit: 'ms', stats, ratioTunnelToPlainRelay: { p50: p50Ratio, p99: p99Ratio },
    innerConnectionDataSegmentsPerRoundTrip: segments,
  };
  addTarget('ping-pong p50: tunnel / plain relay', p50Ratio, `${ratio(p50Ratio)} (${ms(tunnel.p50)} vs ${ms(relay.p50)} ms)`, `<= ${TARGETS.pingPongRatio}x`, p50Ratio <= TARGETS.pingPongRatio);
  say('\n== Round-trip latency, 1-byte ping-pong to a Node echo server (ms) ==');
  say(
    table(
      [
        ['direct', ...[stats['direct'] as Percentiles].flatMap((s) => [ms(s.p50), ms(s.p90), ms(s.p99), ms(s.max), `${s.count}`]), '', ''],
        ['plain Node relay, 2 hops', ms(relay.p50), ms(relay.p90), ms(relay.p99), ms(relay.max), `${relay.count}`, segs(segments['plain-relay']), ''],
        ['tunnel, plain link', ms(tunnel.p50), ms(tunnel.p90), ms(tunnel.p99), ms(tunnel.max), `${tunnel.count}`, segs(segments['tunnel']), `p50 ${ratio(p50Ratio)}, p99 ${ratio(p99Ratio)} of relay`],
      ],
      ['path', 'p50', 'p90', 'p99', 'max', 'samples', 'middle-hop segs/RT out+in', 'ratio'],
    ),
  );
}
