import type { Clock, TimerHandle } from '../../common/support/clock.js';
import { settle } from './duplex-pair.js';

const MAX_TIMERS_PER_INSTANT = 10_000;

interface ScheduledTimer {
  dueMs: number;
  /** Order among timers due at the same time: the one scheduled first fires first. */
  order: number;
  intervalMs: number | null;
  callback: () => void;
}

export interface ManualClockOptions {
  startMs?: number;
  /** Run after each timer fires, so that the I/O it started completes before the next one. */
  afterTimer?: () => Promise<void>;
}

/**
 * A Clock that moves only when the test says so. `advance(ms)` fires every timer that falls due,
 * in time order (intervals as often as they fall due), and after each one lets the in-memory
 * I/O it caused run to completion, so that a heartbeat sent at t=1000 has arrived before a
 * deadline checked at t=3000.
 */
export class ManualClock implements Clock {
  #nowMs: number;
  #nextOrder = 0;
  readonly #timers = new Set<ScheduledTimer>();
  readonly #afterTimer: () => Promise<void>;
  #advancing = false;

  constructor(options: ManualClockOptions = {}) {
    this.#nowMs = options.startMs ?? 0;
    this.#afterTimer = options.afterTimer ?? (() => settle());
  }

  now(): number {
    return this.#nowMs;
  }

  setTimeout(callback: () => void, delayMs: number): TimerHandle {
    return this.#schedule(callback, Math.max(0, delayMs), null);
  }

  setInterval(callback: () => void, intervalMs: number): TimerHandle {
    const period = Math.max(1, intervalMs);
    return this.#schedule(callback, period, period);
  }

  /** Timers scheduled and neither fired (for timeouts) nor cancelled. */
  get pendingTimers(): number {
    return this.#timers.size;
  }

  /** When the next timer falls due, or null when none is pending. */
  get nextDueMs(): number | null {
    return this.#next(Number.POSITIVE_INFINITY)?.dueMs ?? null;
  }

  /** Moves time forward by `ms`, firing what falls due on the way. */
  async advance(ms: number): Promise<void> {
    if (ms < 0) throw new RangeError('time does not go back');
    await this.advanceTo(this.#nowMs + ms);
  }

  /** Moves time forward to `targetMs`, firing what falls due on the way. */
  async advanceTo(targetMs: number): Promise<void> {
    if (this.#advancing) throw new Error('ManualClock.advance is already running');
    this.#advancing = true;
    try {
      let firedAtThisInstant = 0;
      for (let timer = this.#next(targetMs); timer !== null; timer = this.#next(targetMs)) {
        firedAtThisInstant = timer.dueMs === this.#nowMs ? firedAtThisInstant + 1 : 1;
        // A timer that keeps re-arming itself for "now" would spin here for ever; fail the test instead.
        if (firedAtThisInstant > MAX_TIMERS_PER_INSTANT) {
          throw new Error(`more than ${MAX_TIMERS_PER_INSTANT} timers fired at t=${this.#nowMs} ms: a timer loop`);
        }
        this.#nowMs = timer.dueMs;
        if (timer.intervalMs === null) {
          this.#timers.delete(timer);
        } else {
          timer.dueMs += timer.intervalMs;
          timer.order = this.#nextOrder++;
        }
        timer.callback();
        await this.#afterTimer();
      }
      this.#nowMs = Math.max(this.#nowMs, targetMs);
    } finally {
      this.#advancing = false;
    }
  }

  #schedule(callback: () => void, delayMs: number, intervalMs: number | null): TimerHandle {
    const timer: ScheduledTimer = { dueMs: this.#nowMs + delayMs, order: this.#nextOrder++, intervalMs, callback };
    this.#timers.add(timer);
    return { cancel: () => this.#timers.delete(timer) };
  }

  #next(limitMs: number): ScheduledTimer | null {
    let best: ScheduledTimer | null = null;
    for (const timer of this.#timers) {
      if (timer.dueMs > limitMs) continue;
      if (best === null || timer.dueMs < best.dueMs || (timer.dueMs === best.dueMs && timer.order < best.order)) {
        best = timer;
      }
    }
    return best;
  }
}
