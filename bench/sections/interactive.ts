/**
 * Interactive latency under bulk: 1-byte ping-pong on one session while another session through
 * the same cproxy (same link) runs a bulk transfer (bench/peers/bulk.ts, its own process), both
 * ways, unbounded and paced; the same through the plain relay; and the CPU floor, with the pings
 * through a second, idle tunnel. The link's kernel queues are sampled meanwhile.
 * Target: p99 under an unbounded bulk <= 5 ms.
 */
import { NODE, peerScript, procs } from '../harness/context.js';
import { gbit, kib, ms, table } from '../harness/format.js';
import { progress, results, say } from '../harness/report.js';
import type { BenchSection } from '../harness/section.js';
import { summarize, type Percentiles } from '../harness/stats.js';
import { sleep } from '../harness/system.js';
import { TARGETS, addTarget } from '../harness/targets.js';
import { startNodeRelay, startTunnel, stopPath, type Path } from '../paths.js';
import { bulkBitsPerSecond, type BulkResult } from '../probes/bulk.js';
import { pingPong } from '../probes/echo.js';
import { sampleLinkQueues, type LinkQueues } from '../probes/link-sockets.js';

const BULK_SECONDS = 5;
/** The paced bulk: heavy, but leaving the CPUs some room. */
const PACED_BULK_MBIT = 1000;

export const interactive: BenchSection = { name: 'interactive', run: ({ targetPort }) => measureInteractive(targetPort) };

interface BulkWhilePinging {
  stats: Percentiles;
  bulkBitsPerSecond: number;
  /** The link's kernel queues while the pings ran, when a link port was given. */
  queues: LinkQueues | null;
}

/**
 * Runs a bulk transfer through `bulkPort` (in its own process) and, once it is under way, 1-byte
 * ping-pong through `pingPort`. `rate`: pace the bulk (Mbit/s) instead of letting it take the CPU.
 * `linkPort`: a tunnel's link, whose kernel queues are sampled meanwhile.
 */
async function bulkWhilePinging(
  label: string, bulkPort: number, pingPort: number, direction: 'download' | 'upload', rate: number | null, linkPort?: number,
): Promise<BulkWhilePinging> {
  const bulk = procs.spawn(`bulk-${label}`, NODE, [
    peerScript('bulk'), String(bulkPort), direction, String(BULK_SECONDS), ...(rate === null ? [] : [String(rate)]),
  ]);
  await sleep(1000);
  const sampler = linkPort === undefined ? null : sampleLinkQueues(linkPort, `${label}-${direction}`);
  const samples = await pingPong(pingPort, 3000, 50, (BULK_SECONDS - 1.5) * 1000);
  const queues = sampler === null ? null : await sampler.stop();
  const result = await procs.jsonResult<BulkResult>(bulk, 8000);
  return { stats: summarize(samples), bulkBitsPerSecond: bulkBitsPerSecond(result), queues };
}

async function measureInteractive(targetPort: number): Promise<void> {
  const rows: string[][] = [];
  const data: Record<string, unknown> = {};
  const setups: { key: string; label: string; start: () => Promise<Path> }[] = [
    { key: 'tunnel', label: 'tunnel (same cproxy, same link)', start: () => startTunnel('int-tunnel', targetPort) },
    { key: 'plain-relay', label: 'plain Node relay (same relay processes)', start: () => startNodeRelay('int-relay', targetPort) },
  ];
  for (const setup of setups) {
    const path = await setup.start();
    try {
      await sleep(200);
      const idle = summarize(await pingPong(path.port, 3000, 500));
      rows.push([`${setup.label}, no bulk`, ms(idle.p50), ms(idle.p99), ms(idle.max), `${idle.count}`, '', '']);
      data[`${setup.key}/idle`] = idle;
      const loads = [
        { direction: 'download', rate: null },
        { direction: 'upload', rate: null },
        { direction: 'download', rate: PACED_BULK_MBIT },
        { direction: 'upload', rate: PACED_BULK_MBIT },
      ] as const;
      for (const { direction, rate } of loads) {
        const load = rate === null ? `bulk ${direction}` : `bulk ${direction} paced at ${rate / 1000} Gbit/s`;
        const key = rate === null ? direction : `${direction}-paced`;
        progress(`interactive: ${setup.label}, ${load}`);
        const { stats, bulkBitsPerSecond, queues } = await bulkWhilePinging(`${setup.key}-${key}`, path.port, path.port, direction, rate, path.linkPort);
        data[`${setup.key}/${key}`] = { ...stats, bulkBitsPerSecond, linkSocketQueuesBytes: queues };
        const q = queues === null ? '' : direction === 'download'
          ? `sproxy Send-Q ${kib(queues.sproxySendQ.p50)}/${kib(queues.sproxySendQ.max)}, cproxy Recv-Q ${kib(queues.cproxyRecvQ.p50)}/${kib(queues.cproxyRecvQ.max)}`
          : `cproxy Send-Q ${kib(queues.cproxySendQ.p50)}/${kib(queues.cproxySendQ.max)}, sproxy Recv-Q ${kib(queues.sproxyRecvQ.p50)}/${kib(queues.sproxyRecvQ.max)}`;
        rows.push([`${setup.label}, ${load}`, ms(stats.p50), ms(stats.p99), ms(stats.max), `${stats.count}`, gbit(bulkBitsPerSecond), q]);
        if (setup.key === 'tunnel' && rate === null) {
          addTarget(`interactive p99 under bulk ${direction} (tunnel)`, stats.p99, `${ms(stats.p99)} ms`, `<= ${TARGETS.interactiveP99Ms} ms`, stats.p99 <= TARGETS.interactiveP99Ms);
        }
      }
    } finally {
      await stopPath(path);
    }
  }
  // What the CPU alone costs: the pings go through a second tunnel whose processes do nothing else,
  // to the same target, while the bulk loads the machine through the first. Sharing a link and its
  // processes can cost no less than this.
  const bulkPath = await startTunnel('int-floor-bulk', targetPort);
  const pingPath = await startTunnel('int-floor-ping', targetPort).catch(async (error: unknown) => {
    await stopPath(bulkPath);
    throw error;
  });
  try {
    await sleep(200);
    for (const direction of ['download', 'upload'] as const) {
      progress(`interactive: CPU floor, bulk ${direction} through another tunnel`);
      const { stats, bulkBitsPerSecond } = await bulkWhilePinging(`floor-${direction}`, bulkPath.port, pingPath.port, direction, null);
      data[`separate-tunnel/${direction}`] = { ...stats, bulkBitsPerSecond };
      rows.push([`a second, idle tunnel; bulk ${direction} through the first`, ms(stats.p50), ms(stats.p99), ms(stats.max), `${stats.count}`, gbit(bulkBitsPerSecond), '']);
    }
  } finally {
    await stopPath(pingPath);
    await stopPath(bulkPath);
  }
  results['interactive'] = { unit: 'ms', note: 'ping-pong on one connection while another connection through the same proxies runs a bulk transfer', ...data };
  say('\n== Interactive latency while another session on the same link runs a bulk transfer (ms) ==');
  say(table(rows, ['path, load', 'p50', 'p99', 'max', 'samples', 'bulk Gbit/s', 'link queues in the kernel, p50/max']));
}
