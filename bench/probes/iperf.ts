/**
 * iperf3 through a path: one TCP stream for IPERF_SECONDS, upload or download (-R), with what the
 * path's own processes spent per GB carried (CPU time and read/write system calls, from /proc).
 */
import { procs } from '../harness/context.js';
import { HOST, LOCAL, onHost, sleep, sumCounters, type BenchHost, type ProcCounters } from '../harness/system.js';

export const IPERF_SECONDS = 5;

export interface IperfResult {
  bitsPerSecond: number;
  retransmits: number | null;
  /** Bytes the receiving end got. */
  bytes?: number;
  /**
   * What the relay's own processes (the proxies, the relays, socat, ssh) spent per GB carried:
   * CPU milliseconds and read/write system calls (from /proc; `pids` of iperfMeasured).
   */
  relayCostPerGB?: { cpuMs: number; readCalls: number; writeCalls: number };
  error?: string;
}

/** iperf3 through `port`, with the CPU and system calls of `pids` (the relay's processes) counted. */
export async function iperfMeasured(port: number, reverse: boolean, label: string, pids: number[]): Promise<IperfResult> {
  const before: ProcCounters = sumCounters(pids);
  const result = await iperf(port, reverse, label);
  await sleep(100); // let per-connection children (socat) be reaped into their parent's counters
  const after: ProcCounters = sumCounters(pids);
  if (pids.length > 0 && result.bytes !== undefined && result.bytes > 0) {
    const gb = result.bytes / 1e9;
    result.relayCostPerGB = {
      cpuMs: (after.cpuMs - before.cpuMs) / gb,
      readCalls: (after.syscr - before.syscr) / gb,
      writeCalls: (after.syscw - before.syscw) / gb,
    };
  }
  return result;
}

/** Where the iperf3 client runs and what it connects to, and for how long (default: LOCAL, HOST, IPERF_SECONDS). */
export interface IperfPlace {
  from?: BenchHost;
  address?: string;
  seconds?: number;
}

export async function iperf(port: number, reverse: boolean, label: string, place: IperfPlace = {}): Promise<IperfResult> {
  const seconds = place.seconds ?? IPERF_SECONDS;
  const args = ['-c', place.address ?? HOST, '-p', String(port), '-t', String(seconds), '-J', '--connect-timeout', '5000'];
  if (reverse) args.push('-R');
  const child = procs.spawn(`iperf3-${label}${reverse ? '-R' : ''}`, ...onHost(place.from ?? LOCAL, 'iperf3', args));
  const exited = await Promise.race([child.exited.then(() => true), sleep((seconds + 15) * 1000).then(() => false)]);
  if (!exited) {
    await procs.stop(child, 500, 'SIGKILL');
    return { bitsPerSecond: Number.NaN, retransmits: null, error: 'iperf3 timed out' };
  }
  try {
    const json = JSON.parse(child.stdout()) as {
      error?: string;
      end?: { sum_received?: { bits_per_second?: number; bytes?: number }; sum_sent?: { retransmits?: number } };
    };
    if (json.error !== undefined) return { bitsPerSecond: Number.NaN, retransmits: null, error: json.error };
    return {
      bitsPerSecond: json.end?.sum_received?.bits_per_second ?? Number.NaN,
      retransmits: json.end?.sum_sent?.retransmits ?? null,
      ...(json.end?.sum_received?.bytes === undefined ? {} : { bytes: json.end.sum_received.bytes }),
    };
  } catch (error) {
    return { bitsPerSecond: Number.NaN, retransmits: null, error: `unparseable iperf3 output: ${String(error)}` };
  }
}
