/**
 * WAN: the tunnel, with a secret, on an emulated wide-area path (netlab/wan-hosts.ts: two
 * namespaces joined by a user-space forwarder with delay, a bottleneck queue and loss), against
 * direct TCP and ssh -L on the same path in the same run.
 *   - keys beside bulk: a key every 50 ms while a bulk upload fills the bottleneck's queue, then
 *     while a bulk download fills the other way's; direct is two separate TCP connections, the
 *     tunnel two sessions on one link. 20 Mbit/s with 25 ms one way and 100 Mbit/s with 50 ms,
 *     both with a 200 ms queue (a deep buffer).
 *   - a long fat path: one iperf3 stream, 150 Mbit/s, 100 ms one way, each way.
 *   - loss: 1% at random, 50 Mbit/s, 25 ms one way, each way.
 * Each case runs in two alternated rounds: the keys of both runs pooled, the best stream counting.
 * Targets (issue 16): key p99 <= 1.2x direct and bulk >= 0.9x direct; one stream >= 0.9x direct
 * and >= 1.0x ssh -L; under loss >= 0.9x direct.
 */
import { WanHosts, type PathDirection, type PathSettings } from '../../netlab/wan-hosts.js';
import { NODE, peerScript, procs } from '../harness/context.js';
import { removeAtExit } from '../harness/hosts.js';
import { ms, ratio, table } from '../harness/format.js';
import { progress, results, say } from '../harness/report.js';
import type { BenchSection } from '../harness/section.js';
import { alternatedSchedule, bestOf, summarize, type Percentiles } from '../harness/stats.js';
import { HOST, freePort, isListening, onHost, sleep, waitFor, type BenchHost } from '../harness/system.js';
import { addTarget } from '../harness/targets.js';
import { startSsh, startTunnel, stopPath, type Path } from '../paths.js';
import { bulkBitsPerSecond, type BulkResult } from '../probes/bulk.js';
import { iperf } from '../probes/iperf.js';

const KEY_INTERVAL_MS = 50;
const BULK_SECONDS = 12;
/** Keys start once the bulk has filled the queue, and stop before it ends. */
const KEYS_AFTER_MS = 3000;
const KEYS_SECONDS = 8;
const QUEUE_SAMPLE_MS = 20;
const IPERF_WAN_SECONDS = 10;
/** Runs of each stream case, and of each way of typing beside bulk, alternated. */
const STREAM_ROUNDS = 2;
const KEYS_ROUNDS = 2;

const TARGETS = { keyP99Ratio: 1.2, bulkRatio: 0.9, streamRatio: 0.9, streamVsSsh: 1.0, lossyRatio: 0.9 };

const KEYS_PATHS: { label: string; settings: PathSettings }[] = [
  { label: '20 Mbit/s, 25 ms', settings: { rateMbit: 20, delayMs: 25, queueMs: 200, loss: 0, blackhole: false } },
  { label: '100 Mbit/s, 50 ms', settings: { rateMbit: 100, delayMs: 50, queueMs: 200, loss: 0, blackhole: false } },
];
const LONG_FAT: PathSettings = { rateMbit: 150, delayMs: 100, queueMs: 100, loss: 0, blackhole: false };
const LOSSY: PathSettings = { rateMbit: 50, delayMs: 25, queueMs: 100, loss: 0.01, blackhole: false };

/** Three sections, each on hosts of its own (`--only wan` runs them all; `--only wan-keys` one). */
export const wanKeys: BenchSection = { name: 'wan-keys', run: () => onWan('keysBesideBulk', (place) => keysBesideBulk(place)) };
export const wanStream: BenchSection = {
  name: 'wan-stream',
  run: () => onWan('longFatPath', (place) => streams(place, 'long fat path, 150 Mbit/s, 100 ms', LONG_FAT, true)),
};
export const wanLoss: BenchSection = {
  name: 'wan-loss',
  run: () => onWan('lossy', (place) => streams(place, '1% loss, 50 Mbit/s, 25 ms', LOSSY, false)),
};

interface WanPlace {
  hosts: WanHosts;
  client: BenchHost;
  server: BenchHost;
  targetPort: number;
  iperfPort: number;
}

/** Runs `measure` on fresh WAN hosts with a target and an iperf3 server, its result under results.wan[key]. */
async function onWan(key: string, measure: (place: WanPlace) => Promise<Record<string, unknown>>): Promise<void> {
  const hosts = new WanHosts(`b${process.pid % 10_000}`);
  const removed = removeAtExit(hosts);
  await hosts.open({ seed: 1 });
  const client: BenchHost = { ns: hosts.client, address: WanHosts.CLIENT_ADDRESS };
  const server: BenchHost = { ns: hosts.server, address: WanHosts.SERVER_ADDRESS };
  try {
    const targetPort = await freePort();
    const iperfPort = await freePort();
    procs.spawn('wan-target', ...onHost(server, NODE, [peerScript('target'), String(targetPort), '0.0.0.0']));
    procs.spawn('wan-iperf3-server', ...onHost(server, 'iperf3', ['-s', '-p', String(iperfPort)]));
    await waitFor(() => isListening(targetPort, server) && isListening(iperfPort, server), 10_000, 'wan: target and iperf3 listening');
    const out = (results['wan'] ??= {}) as Record<string, unknown>;
    out[key] = await measure({ hosts, client, server, targetPort, iperfPort });
  } finally {
    await hosts.close(); // kills what still runs on the two hosts
    removed();
  }
}

interface KeysRun {
  samples: number[];
  lost: number;
  bulkMbit: number;
  /** The bulk's bottleneck queue (what a packet arriving then would wait), sampled while the keys ran. */
  queueWaits: number[];
}

/** A bulk transfer and, once it has filled the queue, keys; both through `address` from the client host. */
async function keysAndBulk(place: WanPlace, name: string, address: string, bulkWay: PathDirection): Promise<KeysRun> {
  const bulk = procs.spawn(`${name}-bulk`, ...onHost(place.client, NODE, [peerScript('bulk'), address, bulkWay, String(BULK_SECONDS)]));
  await sleep(KEYS_AFTER_MS);
  const keys = procs.spawn(`${name}-keys`, ...onHost(place.client, NODE, [peerScript('keys'), address, String(KEY_INTERVAL_MS), String(KEYS_SECONDS)]));
  const queueWaits = sampleQueue(place.hosts, bulkWay, KEYS_SECONDS * 1000);
  const keyResult = await procs.jsonResult<{ samples: number[]; lost: number }>(keys, (KEYS_SECONDS + 15) * 1000);
  const bulkResult = await procs.jsonResult<BulkResult>(bulk, (BULK_SECONDS + 60) * 1000);
  return {
    samples: keyResult?.samples ?? [],
    lost: keyResult?.lost ?? Number.NaN,
    bulkMbit: bulkBitsPerSecond(bulkResult) / 1e6,
    queueWaits: await queueWaits,
  };
}

/** One way's bottleneck queue every QUEUE_SAMPLE_MS for `durationMs`: where a key's extra wait comes from. */
async function sampleQueue(hosts: WanHosts, way: PathDirection, durationMs: number): Promise<number[]> {
  const waits: number[] = [];
  for (const end = Date.now() + durationMs; Date.now() < end; await sleep(QUEUE_SAMPLE_MS)) {
    waits.push((await hosts.stats())[way].waitMs);
  }
  return waits;
}

/** The runs of one way together: every key's sample pooled, the keys lost added up, the bulk's mean rate. */
function pooled(runs: readonly KeysRun[]): { keys: Percentiles; lost: number; bulkMbit: number; queue: Percentiles } {
  return {
    keys: summarize(runs.flatMap((run) => run.samples)),
    lost: runs.reduce((sum, run) => sum + run.lost, 0),
    bulkMbit: runs.reduce((sum, run) => sum + run.bulkMbit, 0) / runs.length,
    queue: summarize(runs.flatMap((run) => run.queueWaits)),
  };
}

async function keysBesideBulk(place: WanPlace): Promise<Record<string, unknown>> {
  const rows: string[][] = [];
  const data: Record<string, unknown> = {};
  for (const { label: pathLabel, settings } of KEYS_PATHS) {
    await place.hosts.set(settings);
    for (const bulkWay of ['upload', 'download'] as const) {
      const label = bulkWay === 'upload' ? pathLabel : `${pathLabel} (download)`;
      data[label] = { settings, ...(await keysBesideOneBulk(place, label, bulkWay, rows)) };
    }
  }
  say(`\n== WAN: a key every ${KEY_INTERVAL_MS} ms beside a bulk upload, then a bulk download, 200 ms bottleneck queue (ms; ${KEYS_ROUNDS} alternated runs each, keys pooled) ==`);
  say(table(rows, ['path: how', 'key p50', 'p99', 'max', 'keys', 'lost', 'bulk Mbit/s', 'queue p50', 'queue p99']));
  return data;
}

/** Keys beside one bulk transfer on the path as set, direct and through the tunnel: its rows and targets added. */
async function keysBesideOneBulk(place: WanPlace, label: string, bulkWay: PathDirection, rows: string[][]): Promise<Record<string, unknown>> {
  // Alternated rounds (direct, tunnel, tunnel, direct), the keys of each way pooled: one run
  // each moved direct's p99 from 128 to 297 ms between benches.
  const runs: Record<'direct' | 'tunnel', KeysRun[]> = { direct: [], tunnel: [] };
  for (const way of alternatedSchedule(['direct', 'tunnel'] as const, KEYS_ROUNDS)) {
    progress(`wan: keys beside a bulk ${bulkWay}, ${label}: ${way}`);
    if (way === 'direct') {
      runs.direct.push(await keysAndBulk(place, 'wan-keys-direct', `${place.server.address}:${place.targetPort}`, bulkWay));
    } else {
      const path = await startTunnel('wan-keys', place.targetPort, { tls: true, client: place.client, server: place.server });
      try {
        runs.tunnel.push(await keysAndBulk(place, 'wan-keys-tunnel', `${HOST}:${path.port}`, bulkWay));
      } finally {
        await stopPath(path);
      }
    }
    await sleep(1000); // the queue drains
  }
  const directResult = pooled(runs.direct);
  const tunnelResult = pooled(runs.tunnel);
  const p99Ratio = tunnelResult.keys.p99 / directResult.keys.p99;
  const bulkRatio = tunnelResult.bulkMbit / directResult.bulkMbit;
  for (const [who, r] of [['direct TCP (separate connections)', directResult], ['tunnel (one link, secret)', tunnelResult]] as const) {
    rows.push([
      `${label}: ${who}`, ms(r.keys.p50, 1), ms(r.keys.p99, 1), ms(r.keys.max, 1), `${r.keys.count}`, `${r.lost}`, r.bulkMbit.toFixed(1),
      ms(r.queue.p50, 0), ms(r.queue.p99, 0),
    ]);
  }
  addTarget(`WAN ${label}: key p99 beside bulk ${bulkWay}, tunnel / direct`, p99Ratio,
    `${ratio(p99Ratio)} (${ms(tunnelResult.keys.p99, 0)} vs ${ms(directResult.keys.p99, 0)} ms)`, `<= ${TARGETS.keyP99Ratio}x`, p99Ratio <= TARGETS.keyP99Ratio);
  addTarget(`WAN ${label}: bulk ${bulkWay} beside keys, tunnel / direct`, bulkRatio,
    `${ratio(bulkRatio)} (${tunnelResult.bulkMbit.toFixed(1)} vs ${directResult.bulkMbit.toFixed(1)} Mbit/s)`, `>= ${TARGETS.bulkRatio}x`, bulkRatio >= TARGETS.bulkRatio);
  return { direct: directResult, tunnel: tunnelResult, ratio: { keyP99: p99Ratio, bulk: bulkRatio }, runs };
}

/** One iperf3 stream each way: direct, through the tunnel, and (`withSsh`) through ssh -L. */
async function streams(place: WanPlace, label: string, settings: PathSettings, withSsh: boolean): Promise<Record<string, unknown>> {
  await place.hosts.set(settings);
  const starters: { key: string; label: string; start: () => Promise<Path | null> }[] = [
    { key: 'direct', label: 'direct TCP', start: async () => null },
    { key: 'tunnel', label: 'tunnel (secret)', start: () => startTunnel('wan-stream', place.iperfPort, { tls: true, client: place.client, server: place.server }) },
    ...(withSsh ? [{ key: 'ssh', label: 'ssh -L', start: () => startSsh('wan-ssh', place.iperfPort, place.client, place.server) }] : []),
  ];
  // Alternated rounds (direct, tunnel, ssh, then the other way round), the best run of each
  // counting, as in the throughput section: one run each moved a ratio by 0.1 between benches.
  const runs: Record<string, { up: number[]; down: number[] }> = {};
  for (const key of alternatedSchedule(starters.map((starter) => starter.key), STREAM_ROUNDS)) {
    const starter = starters.find((candidate) => candidate.key === key);
    if (starter === undefined) continue;
    progress(`wan: ${label}: ${starter.label}`);
    const path = await starter.start();
    try {
      const where = path === null ? { address: place.server.address, port: place.iperfPort } : { address: HOST, port: path.port };
      const run = (reverse: boolean): Promise<number> =>
        iperf(where.port, reverse, `wan-${starter.key}`, { from: place.client, address: where.address, seconds: IPERF_WAN_SECONDS }).then((r) => r.bitsPerSecond / 1e6);
      const entry = (runs[key] ??= { up: [], down: [] });
      entry.up.push(await run(false));
      entry.down.push(await run(true));
    } finally {
      if (path !== null) await stopPath(path);
    }
  }
  const rates: Record<string, { up: number; down: number }> = {};
  for (const [key, entry] of Object.entries(runs)) rates[key] = { up: bestOf(entry.up), down: bestOf(entry.down) };
  const direct = rates['direct'] ?? { up: Number.NaN, down: Number.NaN };
  const tunnel = rates['tunnel'] ?? { up: Number.NaN, down: Number.NaN };
  const rows = starters.map(({ key, label: how }) => {
    const r = rates[key] ?? { up: Number.NaN, down: Number.NaN };
    return [how, r.up.toFixed(1), r.down.toFixed(1), ratio(r.up / direct.up), ratio(r.down / direct.down)];
  });
  say(`\n== WAN: one stream (iperf3 -t ${IPERF_WAN_SECONDS}), ${label} (Mbit/s, best of ${STREAM_ROUNDS} alternated runs) ==`);
  say(table(rows, ['path', 'upload', 'download', 'up vs direct', 'down vs direct']));
  const goal = withSsh ? TARGETS.streamRatio : TARGETS.lossyRatio;
  for (const direction of ['up', 'down'] as const) {
    const value = tunnel[direction] / direct[direction];
    addTarget(`WAN ${label}: tunnel / direct, ${direction}load`, value, ratio(value), `>= ${goal}x`, value >= goal);
    if (withSsh) {
      const ssh = rates['ssh']?.[direction] ?? Number.NaN;
      const vsSsh = tunnel[direction] / ssh;
      addTarget(`WAN ${label}: tunnel / ssh -L, ${direction}load`, vsSsh, ratio(vsSsh), `>= ${TARGETS.streamVsSsh}x`, vsSsh >= TARGETS.streamVsSsh);
    }
  }
  return { settings, mbitPerSecond: rates, runs };
}
