import type { Clock, TimerHandle } from './clock.js';
import type { LogFields, Logger } from './logger.js';

/**
 * How long repeats of a line are counted before the count is written. A failure that repeats as
 * fast as the reconnect backoff allows (once a second at most) then costs four lines a minute
 * rather than sixty, and a wrong secret's first attempts, while the client's authentication backoff
 * is still short (about seven of them in the first 8 to 15 s), make a single count; yet someone
 * tailing the log learns within 15 s that, and how often, a failure goes on. A failure rarer than
 * this (authentication retries at their 30 s cap) is written each time.
 */
export const REPEAT_INTERVAL_MS = 15_000;

/**
 * Kinds of line followed at once, at most. Past it a new kind is counted with the other lines of
 * the same level and message (its identifying fields ignored): a scan from many hosts cannot grow
 * the table, nor the log, without bound.
 */
export const MAX_REPEAT_KINDS = 256;

type Level = keyof Logger;

export interface RepeatCollapsingOptions {
  clock: Clock;
  /** Repeats within this long of the line written are counted, not written; REPEAT_INTERVAL_MS by default. */
  intervalMs?: number;
  /**
   * The values that tell one kind of line from another, besides its level and message: e.g. a
   * peer's host (without the port, which changes with every connection) and an error code. The
   * other fields (attempt numbers, delays) may differ between repeats.
   */
  identify: (fields: LogFields) => readonly unknown[];
}

/** A kind of line written, and the repeats of it counted since. */
interface Kind {
  readonly level: Level;
  readonly message: string;
  /** When the current count started: the line written, or the previous count's line. */
  sinceMs: number;
  repeats: number;
  /** The fields of the latest repeat: the count's line carries them (the latest attempt, delay…). */
  latestFields: LogFields;
  timer: TimerHandle;
}

/**
 * A Logger that writes the first line of a kind and counts the repeats that follow within the
 * interval, then writes one line with the count, "<message> (repeated N times in the last Ks)",
 * and counts again; an interval without repeats forgets the kind, so that its next line is written
 * at once. Nothing is dropped unseen: `flush()` writes the counts still open (at shutdown).
 */
export class RepeatCollapsingLogger implements Logger {
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #intervalMs: number;
  readonly #identify: (fields: LogFields) => readonly unknown[];
  readonly #kinds = new Map<string, Kind>();

  constructor(logger: Logger, options: RepeatCollapsingOptions) {
    this.#logger = logger;
    this.#clock = options.clock;
    this.#intervalMs = options.intervalMs ?? REPEAT_INTERVAL_MS;
    this.#identify = options.identify;
  }

  debug(fields: LogFields, message: string): void {
    this.#log('debug', fields, message);
  }

  info(fields: LogFields, message: string): void {
    this.#log('info', fields, message);
  }

  warn(fields: LogFields, message: string): void {
    this.#log('warn', fields, message);
  }

  error(fields: LogFields, message: string): void {
    this.#log('error', fields, message);
  }

  /** Writes every open count now and forgets every kind (and its timer). Idempotent. */
  flush(): void {
    for (const kind of this.#kinds.values()) {
      kind.timer.cancel();
      this.#writeCount(kind);
    }
    this.#kinds.clear();
  }

  #log(level: Level, fields: LogFields, message: string): void {
    const key = this.#keyOf(level, fields, message);
    const kind = this.#kinds.get(key);
    if (kind !== undefined) {
      kind.repeats++;
      kind.latestFields = fields;
      return;
    }
    this.#logger[level](fields, message);
    const followed: Kind = {
      level,
      message,
      sinceMs: this.#clock.now(),
      repeats: 0,
      latestFields: fields,
      timer: this.#clock.setTimeout(() => this.#onIntervalEnd(key, followed), this.#intervalMs),
    };
    this.#kinds.set(key, followed);
  }

  #keyOf(level: Level, fields: LogFields, message: string): string {
    const key = JSON.stringify([level, message, ...this.#identify(fields)]);
    if (this.#kinds.has(key) || this.#kinds.size < MAX_REPEAT_KINDS) return key;
    return JSON.stringify([level, message]);
  }

  #onIntervalEnd(key: string, kind: Kind): void {
    if (kind.repeats === 0) {
      this.#kinds.delete(key);
      return;
    }
    this.#writeCount(kind);
    kind.repeats = 0;
    kind.sinceMs = this.#clock.now();
    kind.timer = this.#clock.setTimeout(() => this.#onIntervalEnd(key, kind), this.#intervalMs);
  }

  #writeCount(kind: Kind): void {
    if (kind.repeats === 0) return;
    const seconds = Math.round((this.#clock.now() - kind.sinceMs) / 1000);
    this.#logger[kind.level](
      { ...kind.latestFields, repeated: kind.repeats },
      `${kind.message} (repeated ${kind.repeats} ${kind.repeats === 1 ? 'time' : 'times'} in the last ${seconds} s)`,
    );
  }
}
