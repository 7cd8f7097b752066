import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { TwoHosts } from './topology.js';

/** One line of the remote shell's output as the telnet client showed it, stamped by expect. */
export interface ReceivedLine {
  /** Epoch milliseconds ([clock milliseconds] in expect) when the line reached the telnet client. */
  atMs: number;
  text: string;
}

export interface TelnetSessionOptions {
  /** Where telnet connects, on the client host. */
  host: string;
  port: number;
  /** The remote shell prints L1-END .. L{count}-END, one line every `intervalS` seconds. */
  count: number;
  intervalS: number;
  /** expect gives up when nothing at all arrives for this long (a broken session must not hang). */
  silenceTimeoutS: number;
}

/**
 * The expect script: a real `telnet` in a pty. It waits for the shell prompt, runs the numbered
 * loop, reads output up to the last numbered line, asks the shell `echo ALIVE-$((6*7))`, reads up
 * to ALIVE-42, exits the shell and reads to the end. Every line the telnet client shows is
 * reported on stdout as `RX <epoch ms> <text>`; problems as `FAIL <epoch ms> <what>` with a
 * non-zero exit code.
 */
function expectScript(options: TelnetSessionOptions): string {
  return String.raw`log_user 0
fconfigure stdout -buffering line
set timeout ${options.silenceTimeoutS}
proc report {tag text} { puts "$tag [clock milliseconds] $text" }
proc readlines {until what} {
  expect {
    -re {([^\n]*)\n} {
      set line [string map [list "\r" "" "\0" ""] $expect_out(1,string)]
      report RX $line
      if {[regexp -- $until $line]} { return }
      exp_continue
    }
    timeout { report FAIL "no $what: nothing arrived for ${options.silenceTimeoutS} s"; exit 4 }
    eof { report FAIL "no $what: the telnet connection ended"; exit 5 }
  }
}
spawn telnet ${options.host} ${options.port}
expect {
  -re {[#$] $} { report PROMPT "" }
  timeout { report FAIL "no shell prompt within ${options.silenceTimeoutS} s"; exit 2 }
  eof { report FAIL "telnet ended before the shell prompt"; exit 3 }
}
send -- {for i in $(seq 1 ${options.count}); do echo "L$i-END"; sleep ${options.intervalS}; done}
send "\r"
readlines {^L${options.count}-END$} "line L${options.count}-END"
send -- {echo ALIVE-$((6*7))}
send "\r"
readlines {ALIVE-42$} "answer ALIVE-42"
send "exit\r"
expect {
  -re {([^\n]*)\n} {
    report RX [string map [list "\r" "" "\0" ""] $expect_out(1,string)]
    exp_continue
  }
  timeout { report FAIL "telnet did not end after exit"; exit 6 }
  eof {}
}
report DONE ""
exit 0
`;
}

/** An output line of the loop, possibly after a shell prompt. */
export const NUMBERED_LINE = /^(?:[#$] )?L(\d+)-END$/;
/** The shell's answer (typed-ahead input makes the prompt precede it on the same line). */
export const ANSWER_LINE = /^(?:[#$] )?ALIVE-42$/;

interface LineWaiter {
  predicate: (line: ReceivedLine) => boolean;
  resolve: (line: ReceivedLine) => void;
}

/** A telnet client on the client host, driven by expect (started with hosts.spawn, so destroy() kills it). */
export class TelnetSession {
  readonly lines: ReceivedLine[] = [];
  readonly failures: string[] = [];
  /** Everything else expect printed (stderr, unexpected stdout), for diagnostics. */
  readonly other: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly #child: ChildProcess;
  readonly #dir: string;
  readonly #waiters = new Set<LineWaiter>();
  #prompted = false;

  constructor(hosts: TwoHosts, options: TelnetSessionOptions) {
    this.#dir = mkdtempSync(join(tmpdir(), 'etcp-telnet-'));
    const script = join(this.#dir, 'session.exp');
    writeFileSync(script, expectScript(options));
    this.#child = hosts.spawn(hosts.client, ['expect', '-f', script]);
    this.exited = once(this.#child, 'exit').then(([code, signal]) => ({
      code: code as number | null,
      signal: signal as NodeJS.Signals | null,
    }));
    createInterface({ input: this.#child.stdout! }).on('line', (text) => this.#onLine(text));
    createInterface({ input: this.#child.stderr! }).on('line', (text) => this.other.push(`stderr: ${text}`));
  }

  get prompted(): boolean {
    return this.#prompted;
  }

  #onLine(text: string): void {
    const match = /^(RX|FAIL|PROMPT|DONE) (\d+) ?(.*)$/.exec(text);
    if (match === null) {
      this.other.push(text);
      return;
    }
    const [, tag, ms, rest] = match as unknown as [string, string, string, string];
    if (tag === 'FAIL') this.failures.push(rest);
    if (tag === 'PROMPT') this.#prompted = true;
    if (tag !== 'RX') return;
    const line: ReceivedLine = { atMs: Number(ms), text: rest };
    this.lines.push(line);
    for (const waiter of this.#waiters) {
      if (waiter.predicate(line)) {
        this.#waiters.delete(waiter);
        waiter.resolve(line);
      }
    }
  }

  /** The first received line (past or future) matching `predicate`. */
  waitForLine(predicate: (line: ReceivedLine) => boolean, timeoutMs: number, description: string): Promise<ReceivedLine> {
    const seen = this.lines.find(predicate);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const fail = (why: string): void => {
        this.#waiters.delete(waiter);
        clearTimeout(timer);
        reject(new Error(`telnet: no ${description} (${why}); transcript:\n${this.transcript()}`));
      };
      const waiter: LineWaiter = {
        predicate,
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
      };
      const timer = setTimeout(() => fail(`not within ${timeoutMs} ms`), timeoutMs);
      this.#waiters.add(waiter);
      void this.exited.then(() => {
        if (this.#waiters.has(waiter)) fail('expect exited');
      });
    });
  }

  /** Waits for expect to end; kills it after `timeoutMs` (a guard: expect's own timeouts come first). */
  async finish(timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const timer = setTimeout(() => {
      this.failures.push(`expect still running after ${timeoutMs} ms: killed`);
      this.#child.kill('SIGKILL');
    }, timeoutMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * The numbers n of the received `L<n>-END` lines, in arrival order (the echoed command shows
   * `L$i-END`; a shell prompt may precede a line).
   */
  numberedLines(): number[] {
    const numbers: number[] = [];
    for (const { text } of this.lines) {
      const match = NUMBERED_LINE.exec(text);
      if (match !== null) numbers.push(Number(match[1]));
    }
    return numbers;
  }

  transcript(lines = 80): string {
    const received = this.lines.map((line) => `${line.atMs} ${JSON.stringify(line.text)}`);
    return [...received.slice(-lines), ...this.failures.map((f) => `FAIL: ${f}`), ...this.other.slice(-10)].join('\n');
  }

  /** Removes the script's temporary directory (the process itself dies with the hosts). */
  dispose(): void {
    if (this.#child.exitCode === null && this.#child.signalCode === null) this.#child.kill('SIGKILL');
    rmSync(this.#dir, { recursive: true, force: true });
  }
}
