/**
 * The link's (or a relay's middle hop's) TCP connections, seen by the kernel through ss: data
 * segments sent, a reset that kills them, and their socket queues sampled while a test runs.
 */
import { procs } from '../harness/context.js';
import { summarize } from '../harness/stats.js';
import { run } from '../harness/system.js';

/**
 * TCP segments carrying data on the connection(s) to `port`, seen from the connecting end
 * (ss -i counters): out = towards `port`, in = back from it.
 */
export function dataSegments(port: number): { out: number; in: number } {
  const text = run('ss', ['-Htni', 'state', 'established', `( dport = :${port} )`]);
  let out = 0;
  let incoming = 0;
  for (const match of text.matchAll(/data_segs_out:(\d+)/g)) out += Number(match[1]);
  for (const match of text.matchAll(/data_segs_in:(\d+)/g)) incoming += Number(match[1]);
  return { out, in: incoming };
}

/** Kills the tunnel's link connections with a TCP reset (ss -K); returns how many sockets. */
export function killLink(linkPort: number): number {
  const out = run('ss', ['-K', '-Htn', 'state', 'established', `( sport = :${linkPort} or dport = :${linkPort} )`]).trim();
  return out === '' ? 0 : out.split('\n').length;
}

/**
 * Samples the link's socket queues (ss) from a separate process every 200 ms, so that the
 * measuring process is not disturbed. stop() returns, for the cproxy end and the sproxy end, the
 * bytes queued in the kernel: Send-Q (written, not yet acknowledged by the peer's TCP) and
 * Recv-Q (arrived, not yet read by the process).
 */
export function sampleLinkQueues(linkPort: number, label: string): { stop: () => Promise<LinkQueues> } {
  const script = `while :; do echo "#"; ss -Htn state established '( sport = :${linkPort} or dport = :${linkPort} )'; sleep 0.2; done`;
  const child = procs.spawn(`queues-${label}`, 'bash', ['-c', script]);
  return {
    async stop() {
      await procs.stop(child, 500, 'SIGKILL');
      const samples = { cproxySendQ: [] as number[], cproxyRecvQ: [] as number[], sproxySendQ: [] as number[], sproxyRecvQ: [] as number[] };
      for (const line of child.stdout().split('\n')) {
        const fields = line.trim().split(/\s+/);
        if (fields.length < 4) continue;
        const [recvQ, sendQ, local] = [Number(fields[0]), Number(fields[1]), fields[2] as string];
        if (local.endsWith(`:${linkPort}`)) {
          samples.sproxyRecvQ.push(recvQ);
          samples.sproxySendQ.push(sendQ);
        } else {
          samples.cproxyRecvQ.push(recvQ);
          samples.cproxySendQ.push(sendQ);
        }
      }
      const out: Record<string, { p50: number; max: number }> = {};
      for (const [key, list] of Object.entries(samples)) {
        const s = summarize(list);
        out[key] = { p50: s.p50, max: s.max };
      }
      return out as LinkQueues;
    },
  };
}

export type LinkQueues = Record<'cproxySendQ' | 'cproxyRecvQ' | 'sproxySendQ' | 'sproxyRecvQ', { p50: number; max: number }>;
