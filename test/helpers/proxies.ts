import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** One JSON log line of a proxy (pino): level 20 debug, 30 info, 40 warn, 50 error. */
export interface LogLine {
  level: number;
  msg: string;
  time: number;
  [field: string]: unknown;
}

export type LogPredicate = (line: LogLine) => boolean;

/** A cproxy or sproxy started from the built bin/ entry, as a user would run it. */
export class ProxyProcess {
  readonly logs: LogLine[] = [];
  /** stderr lines that were not JSON (usage errors, crashes). */
  readonly rawStderr: string[] = [];
  readonly #child: ChildProcess;
  readonly #waiters = new Set<{ predicate: LogPredicate; resolve: (line: LogLine) => void }>();
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  /**
   * `prefix` runs the proxy through another command, e.g. `ip netns exec NS` for a test host.
   * `executable` replaces `node bin/NAME.js` of this repository, e.g. with an installed package's
   * `cproxy`, run as is (its `#!/usr/bin/env node` finds the first node on PATH).
   */
  constructor(readonly name: 'cproxy' | 'sproxy', args: string[], prefix: string[] = [], executable?: string) {
    const entry = executable === undefined ? [process.execPath, join(REPO_ROOT, 'bin', `${name}.js`)] : [executable];
    const command = [...prefix, ...entry, ...args];
    this.#child = spawn(command[0] as string, command.slice(1), {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.exited = once(this.#child, 'exit').then(([code, signal]) => ({
      code: code as number | null,
      signal: signal as NodeJS.Signals | null,
    }));
    const lines = createInterface({ input: this.#child.stderr! });
    lines.on('line', (text) => {
      let line: LogLine;
      try {
        line = JSON.parse(text) as LogLine;
      } catch {
        this.rawStderr.push(text);
        return;
      }
      this.logs.push(line);
      for (const waiter of this.#waiters) {
        if (waiter.predicate(line)) {
          this.#waiters.delete(waiter);
          waiter.resolve(line);
        }
      }
    });
  }

  get pid(): number {
    return this.#child.pid!;
  }

  /** The exit status, or null while the process runs (or if a signal ended it). */
  get exitCode(): number | null {
    return this.#child.exitCode;
  }

  /** Resolves with the first log line (past or future) matching `predicate`. */
  waitForLog(predicate: LogPredicate, timeoutMs = 20_000, description = 'log line'): Promise<LogLine> {
    const seen = this.logs.find(predicate);
    if (seen !== undefined) return Promise.resolve(seen);
    return this.waitForNextLog(predicate, timeoutMs, description);
  }

  /** Resolves with the next log line from now on matching `predicate`. */
  waitForNextLog(predicate: LogPredicate, timeoutMs = 20_000, description = 'log line'): Promise<LogLine> {
    return new Promise((resolve, reject) => {
      const waiter = {
        predicate,
        resolve: (line: LogLine) => {
          clearTimeout(timer);
          resolve(line);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(new Error(`${this.name}: no ${description} within ${timeoutMs} ms; last lines:\n${this.tail()}`));
      }, timeoutMs);
      this.#waiters.add(waiter);
    });
  }

  countLogs(predicate: LogPredicate): number {
    return this.logs.filter(predicate).length;
  }

  tail(lines = 15): string {
    return [...this.rawStderr, ...this.logs.map((line) => JSON.stringify(line))].slice(-lines).join('\n');
  }

  /** Resident memory in bytes, from /proc. */
  rssBytes(): number {
    const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
    const match = /VmRSS:\s+(\d+) kB/.exec(status);
    return match === null ? 0 : Number(match[1]) * 1024;
  }

  /** CPU time (user + system) the process has used, in milliseconds, from /proc. */
  cpuMs(): number {
    const stat = readFileSync(`/proc/${this.pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    return (ticks * 1000) / 100; // USER_HZ is 100 on Linux
  }

  signal(signal: NodeJS.Signals): void {
    if (this.#child.exitCode === null && this.#child.signalCode === null) this.#child.kill(signal);
  }

  /** Graceful stop (SIGTERM), so that the process writes its coverage; SIGKILL if it hangs. */
  async stop(): Promise<void> {
    this.signal('SIGTERM');
    const timer = setTimeout(() => this.signal('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(timer);
  }

  /** A crash: no chance to tell anybody anything. */
  async crash(): Promise<void> {
    this.signal('SIGKILL');
    await this.exited;
  }
}

const LISTEN_PORT = (line: LogLine): number => Number(String(line['listen']).split(':').pop());

export interface StartedProxy {
  proc: ProxyProcess;
  port: number;
}

/** Starts sproxy on 127.0.0.1 (port 0 = any free port) and waits until it listens. */
export async function startSproxy(
  target: number | string,
  extra: string[] = [],
  listen = '127.0.0.1:0',
  prefix: string[] = [],
  executable?: string,
): Promise<StartedProxy> {
  const targetArg = typeof target === 'number' ? `127.0.0.1:${target}` : target;
  const proc = new ProxyProcess(
    'sproxy',
    ['--listen', listen, '--target', targetArg, '--log-format', 'json', '--log-level', 'debug', ...extra],
    prefix,
    executable,
  );
  const line = await proc.waitForLog((l) => l.msg.startsWith('sproxy listening'), 20_000, 'listening line');
  return { proc, port: LISTEN_PORT(line) };
}

/** Starts cproxy on 127.0.0.1:0 (or `listen`) linked to sproxy, and waits until it listens. */
export async function startCproxy(
  server: number | string,
  extra: string[] = [],
  listen = '127.0.0.1:0',
  prefix: string[] = [],
  executable?: string,
): Promise<StartedProxy> {
  const serverArg = typeof server === 'number' ? `127.0.0.1:${server}` : server;
  const proc = new ProxyProcess(
    'cproxy',
    ['--listen', listen, '--server', serverArg, '--log-format', 'json', '--log-level', 'debug', ...extra],
    prefix,
    executable,
  );
  const line = await proc.waitForLog((l) => l.msg.startsWith('cproxy listening'), 20_000, 'listening line');
  return { proc, port: LISTEN_PORT(line) };
}

export const isLinkUp: LogPredicate = (line) => line.msg.startsWith('link up');
