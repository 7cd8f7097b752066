/**
 * The bench's view of this machine: free ports, readiness polling, short commands, and what the
 * kernel says about sockets (ss) and processes (/proc). Everything here is a plain function.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';

export const HOST = '127.0.0.1';

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Milliseconds since an arbitrary origin, with sub-millisecond precision. */
export const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

/** Rejects with `what` timed out when `promise` has not settled within `ms`. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A port that was free a moment ago (the kernel picked it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Runs a short command, bounded in time; returns stdout. Throws on failure. */
export function run(command: string, args: string[], timeoutMs = 10_000): string {
  return execFileSync(command, args, { timeout: timeoutMs, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/**
 * Where a process runs: this machine's own network namespace (every loopback section), or a host
 * of the emulated WAN (netlab/wan-hosts.ts), reached by others at `address`.
 */
export interface BenchHost {
  readonly ns: string | null;
  readonly address: string;
}

export const LOCAL: BenchHost = { ns: null, address: HOST };

/** The command line that runs `command` on `host`: `ip netns exec` execs it (same pid, same signals). */
export function onHost(host: BenchHost, command: string, args: string[]): [string, string[]] {
  return host.ns === null ? [command, args] : ['ip', ['netns', 'exec', host.ns, command, ...args]];
}

/** True when something listens on port `port` of `host` (asked of the kernel: no connection is made). */
export function isListening(port: number, host: BenchHost = LOCAL): boolean {
  return run(...onHost(host, 'ss', ['-Hltn', `sport = :${port}`])).trim() !== '';
}

/** Established TCP connections on `host` with `port` at either end. */
export function establishedOn(port: number, host: BenchHost = LOCAL): number {
  const out = run(...onHost(host, 'ss', ['-Htn', 'state', 'established', `( sport = :${port} or dport = :${port} )`])).trim();
  return out === '' ? 0 : out.split('\n').length;
}

export async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what}: not ready within ${timeoutMs} ms`);
    await sleep(25);
  }
}

/** Resident set size of a process, in bytes (from /proc). */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  if (match === null) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]) * 1024;
}

/** CPU time (user + system, reaped children included) and read/write system calls of a process. */
export interface ProcCounters {
  cpuMs: number;
  syscr: number;
  syscw: number;
}

const CLOCK_TICKS_PER_SECOND = 100; // USER_HZ on Linux

export function procCounters(pid: number): ProcCounters {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may contain spaces) start at field 3 (state).
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i]), 0); // utime stime cutime cstime
  const io = readFileSync(`/proc/${pid}/io`, 'utf8');
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(io)?.[1] ?? Number.NaN);
  return { cpuMs: (ticks * 1000) / CLOCK_TICKS_PER_SECOND, syscr: field('syscr'), syscw: field('syscw') };
}

/**
 * Every live descendant of `pid`, found by the parent field of each /proc/PID/stat: the session
 * processes sshd forks for a connection, which are no children of the bench.
 */
export function descendantPids(pid: number): number[] {
  const parentOf = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      parentOf.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // gone meanwhile
    }
  }
  const found: number[] = [];
  const wanted = new Set([pid]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [child, parent] of parentOf) {
      if (wanted.has(parent) && !wanted.has(child)) {
        wanted.add(child);
        found.push(child);
        grew = true;
      }
    }
  }
  return found;
}

/** Sum of the counters of `pids` (processes that are gone count as zero). */
export function sumCounters(pids: number[]): ProcCounters {
  const total: ProcCounters = { cpuMs: 0, syscr: 0, syscw: 0 };
  for (const pid of pids) {
    try {
      const c = procCounters(pid);
      total.cpuMs += c.cpuMs;
      total.syscr += c.syscr;
      total.syscw += c.syscw;
    } catch {
      // gone
    }
  }
  return total;
}
