import { describe, expect, it } from 'vitest';
import { DeliveryRate } from '../../../common/engine/delivery-rate.js';

function rate(): DeliveryRate {
  return new DeliveryRate({ minIntervalMs: 10, windowMs: 2000 });
}

/** `bytes` acknowledged every millisecond from `from` (exclusive) to `to` (inclusive). */
function ackEveryMs(meter: DeliveryRate, bytes: number, from: number, to: number, rttMs: number | null = null): void {
  for (let t = from + 1; t <= to; t++) meter.noteDelivered(bytes, t, rttMs);
}

/**
 * One 10 ms round trip per entry of `rates` (bytes a millisecond, acknowledged every millisecond)
 * from `from` on; `after` runs after each. Returns the time at the end.
 */
function roundTrips(meter: DeliveryRate, rates: number[], from: number, after: () => void = () => {}): number {
  let now = from;
  for (const bytesPerMs of rates) {
    ackEveryMs(meter, bytesPerMs, now, now + 10, 10);
    now += 10;
    after();
  }
  return now;
}

describe('DeliveryRate', () => {
  it('knows nothing before a sample has spanned its least interval', () => {
    const meter = rate();
    ackEveryMs(meter, 1000, 0, 10); // spans 9 ms from the first ack: not yet
    expect(meter.bytesPerMs(10)).toBeNull();
    meter.noteDelivered(1000, 11, null);
    expect(meter.bytesPerMs(11)).toBe(1000);
    expect(meter.deliveredBytes).toBe(11_000);
  });

  it('does not count the ack that starts a sample: it acknowledges what was sent before', () => {
    const meter = rate();
    meter.noteDelivered(1_000_000, 0, null); // a burst of old acks, then a steady 1 KB a millisecond
    ackEveryMs(meter, 1000, 0, 20);
    expect(meter.bytesPerMs(20)).toBe(1000);
  });

  it('spans at least a round trip, so that a burst of acks does not read as a fast path', () => {
    const meter = rate();
    meter.noteDelivered(1, 0, 100);
    // 50 KB acknowledged within 20 ms, then nothing until 100 ms: 0.5 KB a millisecond over the round trip.
    ackEveryMs(meter, 2500, 0, 20, 100);
    meter.noteDelivered(0, 60, 100); // nothing acknowledged: ignored
    meter.noteDelivered(1, 100, 100);
    expect(meter.bytesPerMs(100)).toBeCloseTo(50_001 / 100, 6);
  });

  it('keeps the best sample of the window through slower ones, then forgets it', () => {
    const meter = rate();
    meter.noteDelivered(1, 0, null);
    ackEveryMs(meter, 2000, 0, 100);
    ackEveryMs(meter, 100, 100, 1000); // a typist after the bulk
    expect(meter.bytesPerMs(1000)).toBe(2000);
    ackEveryMs(meter, 100, 1000, 2200);
    expect(meter.bytesPerMs(2200)).toBe(100);
  });

  it('starts afresh after a silence longer than its window', () => {
    const meter = rate();
    meter.noteDelivered(1, 0, null);
    ackEveryMs(meter, 1000, 0, 20);
    meter.noteDelivered(5_000_000, 10_000, null); // long-sent bytes acknowledged after an outage
    expect(meter.bytesPerMs(10_000)).toBeNull();
    ackEveryMs(meter, 300, 10_000, 10_020);
    expect(meter.bytesPerMs(10_020)).toBe(300);
  });

  it('calls the path full once three samples in a row grew less than a quarter, and not before', () => {
    const meter = rate();
    meter.noteDelivered(1, 0, 10);
    const notFull = (): void => expect(meter.full).toBe(false);
    let now = roundTrips(meter, [100, 200, 400, 800], 0, notFull);
    now = roundTrips(meter, [900, 950], now, notFull);
    now = roundTrips(meter, [900], now);
    expect(meter.full).toBe(true);
    // Growing by a quarter again (the path became faster): not full any more.
    roundTrips(meter, [1200], now);
    expect(meter.full).toBe(false);
  });

  it('starts up afresh once the window has forgotten every sample (a transfer after a pause)', () => {
    const meter = rate();
    meter.noteDelivered(1, 0, 10);
    const now = roundTrips(meter, [800, 800, 800, 800], 0);
    expect(meter.full).toBe(true);
    // Quiet for longer than the window, then a new transfer growing from a low rate: not full.
    meter.noteDelivered(1, now + 2100, 10);
    roundTrips(meter, [100, 110, 120], now + 2100);
    expect(meter.full).toBe(false);
  });

  it('forgets everything on reset (a new path)', () => {
    const meter = rate();
    meter.noteDelivered(1, 0, null);
    ackEveryMs(meter, 1000, 0, 20);
    meter.reset();
    expect(meter.bytesPerMs(20)).toBeNull();
    expect(meter.full).toBe(false);
    ackEveryMs(meter, 10, 20, 40);
    expect(meter.bytesPerMs(40)).toBe(10);
  });
});
