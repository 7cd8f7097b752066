/**
 * Child processes that are always killed: every process the bench starts goes through one
 * registry, with its output in a log file and its tail in memory.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { sleep } from './system.js';

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

  /**
   * For a child that ends by printing its result as one JSON line (a bench peer): waits up to
   * `timeoutMs` for it to exit (then kills it), and parses the last line of its stdout; null when
   * there is none, or it is not JSON.
   */
  async jsonResult<T>(child: Child, timeoutMs: number): Promise<T | null> {
    const exited = await Promise.race([child.exited.then(() => true), sleep(timeoutMs).then(() => false)]);
    if (!exited) await this.stop(child, 500, 'SIGKILL');
    try {
      return JSON.parse(child.stdout().trim().split('\n').pop() ?? '') as T;
    } catch {
      return null;
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
