import { describe, expect, it } from 'vitest';
import { WindowGrowth } from '../../../common/engine/window-growth.js';

const MiB = 1024 * 1024;

/**
 * Acks of `bytesPerMs` every `stepMs` from `from` to `until`, the window full throughout when
 * `windowFull`. Returns the window after them.
 */
function ackRun(
  growth: WindowGrowth,
  run: { from: number; until: number; stepMs: number; bytesPerMs: number; minRttMs: number | null; windowFull: boolean },
): number {
  let window = growth.windowBytes;
  for (let now = run.from; now <= run.until; now += run.stepMs) {
    if (run.windowFull) growth.noteWindowFull();
    window = growth.noteAcknowledged(run.bytesPerMs * run.stepMs, now, run.minRttMs);
  }
  return window;
}

describe('WindowGrowth: a window that grows to the path', () => {
  it('doubles while the window alone holds a session back on an empty long path, then settles at twice its product, within the cap', () => {
    const growth = new WindowGrowth(2 * MiB, 16 * MiB);
    // A 200 ms path: a full 2 MiB window delivers 2 MiB per round trip.
    let now = 0;
    const windows: number[] = [];
    for (let round = 0; round < 4; round++) {
      const window = growth.windowBytes;
      windows.push(ackRun(growth, { from: now, until: now + 200, stepMs: 20, bytesPerMs: window / 200, minRttMs: 200, windowFull: true }));
      now += 220;
    }
    expect(windows[0]).toBeGreaterThanOrEqual(3.5 * MiB);
    expect(windows[1]).toBeGreaterThanOrEqual(7 * MiB);
    expect(windows[2]).toBeGreaterThanOrEqual(14 * MiB);
    expect(windows[3]).toBe(16 * MiB); // capped
    // A path of 18.75 MB/s (150 Mbit/s) and 200 ms, which the window no longer limits: twice 3.75 MB.
    const settled = new WindowGrowth(2 * MiB, 64 * MiB);
    expect(ackRun(settled, { from: 0, until: 4000, stepMs: 20, bytesPerMs: 18_750, minRttMs: 200, windowFull: true })).toBeCloseTo(7.5e6, -5);
  });

  it('does not grow for a session its window did not hold back, nor on a fast path, nor before a round trip is known', () => {
    const run = { from: 0, until: 2000, stepMs: 20, bytesPerMs: 10_000, minRttMs: 200 };
    // An application that sends 10 MB/s on a 200 ms path never filled its window.
    expect(ackRun(new WindowGrowth(2 * MiB, 16 * MiB), { ...run, windowFull: false })).toBe(2 * MiB);
    // Loopback: 2 GB/s with a 0.2 ms round trip is a product of 400 KB, far below the window.
    expect(ackRun(new WindowGrowth(2 * MiB, 16 * MiB), { ...run, bytesPerMs: 2e6, minRttMs: 0.2, windowFull: true })).toBe(2 * MiB);
    expect(ackRun(new WindowGrowth(2 * MiB, 16 * MiB), { ...run, minRttMs: null, windowFull: true })).toBe(2 * MiB);
    // A cap equal to the window: it never grows.
    expect(ackRun(new WindowGrowth(2 * MiB, 2 * MiB), { ...run, windowFull: true })).toBe(2 * MiB);
  });

  it('a stalled peer acknowledges nothing, so the window stays; a sample does not span a new link', () => {
    const growth = new WindowGrowth(2 * MiB, 16 * MiB);
    growth.noteAcknowledged(1000, 0, 200);
    growth.noteWindowFull();
    // The next ack comes 5 s later (the consumer was stalled, or the link was down): not a sample
    // of 200 ms round trips, but restart() makes it the start of a new one.
    growth.restart();
    expect(growth.noteAcknowledged(2 * MiB, 5000, 200)).toBe(2 * MiB);
    expect(growth.noteAcknowledged(100, 5010, 200)).toBe(2 * MiB); // shorter than a round trip: no sample yet
  });
});
