/**
 * Shared machinery of the benchmark: child processes that are always killed, iptables rules that
 * are always removed, free ports, readiness polling, statistics and small timing helpers.
 */
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { createWriteStream, mkdirSync, readFileSync, type WriteStream } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';

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

/** True when something listens on HOST:port (asked of the kernel: no connection is made). */
export function isListening(port: number): boolean {
  return run('ss', ['-Hltn', `sport = :${port}`]).trim() !== '';
}

/** Established TCP connections with `port` at either end. */
export function establishedOn(port: number): number {
  const out = run('ss', ['-Htn', 'state', 'established', `( sport = :${port} or dport = :${port} )`]).trim();
  return out === '' ? 0 : out.split('\n').length;
}

export async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what}: not ready within ${timeoutMs} ms`);
    await sleep(25);
  }
}

// ── statistics ──────────────────────────────────────────────────────────────

export interface Percentiles {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index] as number;
}

export function summarize(samples: number[]): Percentiles {
  const sorted = [...samples].sort((a, b) => a - b);
  const sum = sorted.reduce((a, b) => a + b, 0);
  return {
    count: sorted.length,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    max: sorted.length === 0 ? Number.NaN : (sorted[sorted.length - 1] as number),
    mean: sorted.length === 0 ? Number.NaN : sum / sorted.length,
  };
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

// ── child processes ─────────────────────────────────────────────────────────

export interface Child {
  readonly name: string;
  readonly process: ChildProcess;
  readonly pid: number;
  /** Resolves with the exit code (or signal) once the process is gone. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** stdout and stderr together (the tail). */
  readonly output: () => string;
  /** stdout alone (the tail). */
  readonly stdout: () => string;
  readonly alive: () => boolean;
}

/**
 * Every child process the benchmark starts goes through here, so that all of them are killed at
 * the end whatever happened: stop() for one, stopAll() in the finally block, and a synchronous
 * SIGKILL sweep in the process 'exit' handler as the last resort.
 */
export class Processes {
  readonly #children = new Set<Child>();
  readonly #logDir: string;
  #counter = 0;

  constructor(logDir: string) {
    this.#logDir = logDir;
    mkdirSync(logDir, { recursive: true });
    process.on('exit', () => this.killAllNow());
  }

  /**
   * Starts `command`; its stdout and stderr go to a log file, and the last 64 KiB of them are
   * kept in memory (for parsing, e.g. iperf3 -J).
   */
  spawn(name: string, command: string, args: string[], options: SpawnOptions = {}): Child {
    const logPath = join(this.#logDir, `${String(++this.#counter).padStart(3, '0')}-${name}.log`);
    const log: WriteStream = createWriteStream(logPath);
    log.write(`$ ${command} ${args.join(' ')}\n`);
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
    let output = '';
    let stdout = '';
    let alive = true;
    const collect = (chunk: Buffer): void => {
      log.write(chunk);
      output += chunk.toString('utf8');
      if (output.length > 1_000_000) output = output.slice(-500_000);
    };
    child.stdout?.on('data', (chunk: Buffer) => {
      collect(chunk);
      stdout += chunk.toString('utf8');
      if (stdout.length > 1_000_000) stdout = stdout.slice(-500_000);
    });
    child.stderr?.on('data', collect);
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      child.once('error', (error) => {
        alive = false;
        collect(Buffer.from(`spawn error: ${error.message}\n`));
        resolve({ code: -1, signal: null });
      });
      child.once('close', (code, signal) => {
        alive = false;
        log.end(`\n[exit code=${code} signal=${signal}]\n`);
        resolve({ code, signal });
      });
    });
    if (child.pid === undefined) alive = false;
    const record: Child = {
      name,
      process: child,
      pid: child.pid ?? -1,
      exited,
      output: () => output,
      stdout: () => stdout,
      alive: () => alive,
    };
    this.#children.add(record);
    void exited.then(() => this.#children.delete(record));
    return record;
  }

  /** SIGTERM (or `signal`), then SIGKILL after `graceMs`; resolves once it is gone. */
  async stop(child: Child, graceMs = 3000, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (!child.alive()) return;
    child.process.kill(signal);
    const gone = await Promise.race([child.exited.then(() => true), sleep(graceMs).then(() => false)]);
    if (!gone) {
      child.process.kill('SIGKILL');
      await Promise.race([child.exited, sleep(2000)]);
    }
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.#children].map((child) => this.stop(child, 2000)));
  }

  killAllNow(): void {
    for (const child of this.#children) {
      if (child.alive()) {
        try {
          child.process.kill('SIGKILL');
        } catch {
          // already gone
        }
      }
    }
  }
}

// ── iptables ────────────────────────────────────────────────────────────────

/** Marks every rule this benchmark inserts, so that leftovers of a crashed run can be found. */
export const IPTABLES_COMMENT = 'eternal-tcp-bench';

/**
 * Rules that silently drop TCP to and from `port` on loopback (both directions: the INPUT chain
 * sees every packet on lo). Always removed by `restore()`, by the caller's finally block and by
 * the 'exit' handler.
 */
export class SilentDrop {
  readonly #rules: string[][];
  #active = false;

  constructor(port: number) {
    const tail = ['-m', 'comment', '--comment', IPTABLES_COMMENT, '-j', 'DROP'];
    this.#rules = [
      ['INPUT', '-i', 'lo', '-p', 'tcp', '--dport', String(port), ...tail],
      ['INPUT', '-i', 'lo', '-p', 'tcp', '--sport', String(port), ...tail],
    ];
    process.on('exit', () => this.restore());
  }

  drop(): void {
    if (this.#active) return;
    this.#active = true;
    for (const [chain, ...rest] of this.#rules) run('iptables', ['-w', '5', '-I', chain as string, ...rest]);
  }

  restore(): void {
    if (!this.#active) return;
    this.#active = false;
    removeBenchRules();
  }
}

/** Deletes every iptables rule carrying the benchmark's comment (also leftovers of a crashed run). */
export function removeBenchRules(): number {
  let removed = 0;
  let rules: string;
  try {
    rules = execFileSync('iptables', ['-w', '5', '-S'], { encoding: 'utf8', timeout: 10_000 });
  } catch {
    return 0;
  }
  for (const line of rules.split('\n')) {
    if (!line.startsWith('-A ') || !line.includes(IPTABLES_COMMENT)) continue;
    const args = splitRule(line.slice(3));
    try {
      execFileSync('iptables', ['-w', '5', '-D', ...args], { timeout: 10_000, stdio: 'ignore' });
      removed++;
    } catch {
      // raced with another removal
    }
  }
  return removed;
}

/** Splits an `iptables -S` line into arguments (quoted comments included). */
function splitRule(line: string): string[] {
  const args: string[] = [];
  const pattern = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (let match = pattern.exec(line); match !== null; match = pattern.exec(line)) {
    args.push(match[1] ?? (match[2] as string));
  }
  return args;
}

// ── formatting ──────────────────────────────────────────────────────────────

export const gbit = (bitsPerSecond: number): string => (Number.isFinite(bitsPerSecond) ? (bitsPerSecond / 1e9).toFixed(2) : 'n/a');
export const ms = (value: number, digits = 3): string => (Number.isFinite(value) ? value.toFixed(digits) : 'n/a');
export const ratio = (value: number): string => (Number.isFinite(value) ? `${value.toFixed(2)}x` : 'n/a');

export function table(rows: string[][], header?: string[]): string {
  const all = header === undefined ? rows : [header, ...rows];
  const widths: number[] = [];
  for (const row of all) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  const line = (row: string[]): string => row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join('  ');
  const out = all.map(line);
  if (header !== undefined) out.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('  '));
  return out.join('\n');
}
