import { describe, expect, it } from 'vitest';
import { EXPRESS_MAIN_BDP_GAIN, SHARED_LINK_BDP_GAIN, SharedLinkBudget } from '../../../common/engine/shared-link.js';

const FLOOR = 256 * 1024;
const HOLD_MS = 250;
const bulk = { name: 'bulk' };
const keys = { name: 'keys' };

function budget(floorBytes = FLOOR): SharedLinkBudget {
  return new SharedLinkBudget({ floorBytes, holdMs: HOLD_MS });
}

describe('SharedLinkBudget: when the link counts as shared', () => {
  it('never limits a session that sends alone, however often', () => {
    const shared = budget();
    for (let t = 0; t < 1000; t += 1) shared.noteSent(bulk, t);
    expect(shared.isShared(1000)).toBe(false);
    expect(shared.budgetBytes(1000)).toBe(Number.POSITIVE_INFINITY);
  });

  it('counts as shared from a second session sending within the hold, until the hold has passed since', () => {
    const shared = budget();
    shared.noteSent(bulk, 0);
    shared.noteSent(keys, 100);
    expect(shared.isShared(100)).toBe(true);
    expect(shared.budgetBytes(100)).toBe(FLOOR);
    shared.noteSent(bulk, 120); // the bulk goes on: still two senders, the hold runs from here
    expect(shared.isShared(120 + HOLD_MS - 1)).toBe(true);
    expect(shared.isShared(120 + HOLD_MS)).toBe(false);
  });

  it('does not count two sessions further apart than the hold (a control connection that spoke once)', () => {
    const shared = budget();
    shared.noteSent(keys, 0);
    shared.noteSent(bulk, HOLD_MS);
    expect(shared.isShared(HOLD_MS)).toBe(false);
  });

  it('is off with a floor of 0', () => {
    const shared = budget(0);
    shared.noteSent(bulk, 0);
    shared.noteSent(keys, 1);
    expect(shared.isShared(1)).toBe(false);
    expect(shared.budgetBytes(1)).toBe(Number.POSITIVE_INFINITY);
  });
});

describe('SharedLinkBudget: how much', () => {
  function sharedAt(now: number): SharedLinkBudget {
    const shared = budget();
    shared.noteSent(bulk, now);
    shared.noteSent(keys, now);
    return shared;
  }

  /** `bytesPerMs` delivered for `ms`, acknowledged every millisecond from `from` on. */
  function deliver(shared: SharedLinkBudget, bytesPerMs: number, from: number, ms: number): number {
    for (let t = from + 1; t <= from + ms; t++) shared.noteDelivered(bytesPerMs, t);
    return from + ms;
  }

  it('is the floor on a fast path, whatever it delivers', () => {
    const shared = sharedAt(0);
    shared.noteRoundTrip(0.08); // loopback
    deliver(shared, 1_000_000, 0, 100); // 8 Gbit/s
    shared.noteSent(keys, 100);
    expect(shared.budgetBytes(100)).toBe(FLOOR);
    shared.noteRoundTrip(2); // slower samples do not raise the fastest
    expect(shared.minRttMs).toBe(0.08);
  });

  it('is the floor until both the round trip and the delivery rate are measured', () => {
    const shared = sharedAt(0);
    deliver(shared, 2500, 0, 200);
    shared.noteSent(keys, 200);
    expect(shared.budgetBytes(200)).toBe(FLOOR); // no round trip yet
    const other = sharedAt(0);
    other.noteRoundTrip(50);
    expect(other.budgetBytes(0)).toBe(FLOOR); // no rate yet
  });

  it('is a bandwidth-delay product and a quarter on a slow, long path: 20 Mbit/s and 50 ms', () => {
    const shared = sharedAt(0);
    shared.noteRoundTrip(50);
    const now = deliver(shared, 2500, 0, 400); // 2,500 bytes a millisecond: 20 Mbit/s
    shared.noteSent(bulk, now);
    shared.noteSent(keys, now);
    expect(shared.deliveryRate(now)).toBeCloseTo(2500, 6);
    // 125 KB in flight fill the path; the budget lets a quarter more wait in its queues. That is
    // below this test's floor of 256 KiB, so the floor holds; a smaller floor shows the product.
    expect(shared.budgetBytes(now)).toBe(FLOOR);
    const small = new SharedLinkBudget({ floorBytes: 16 * 1024, holdMs: HOLD_MS });
    small.noteRoundTrip(50);
    const t = deliver(small, 2500, 0, 400);
    small.noteSent(bulk, t);
    small.noteSent(keys, t);
    expect(small.budgetBytes(t)).toBe(Math.ceil(SHARED_LINK_BDP_GAIN * 50 * 2500)); // 156,250
  });

  it('grows to a long fat path: 150 Mbit/s and 200 ms', () => {
    const shared = sharedAt(0);
    shared.noteRoundTrip(200);
    const now = deliver(shared, 18_750, 0, 1000);
    shared.noteSent(bulk, now);
    shared.noteSent(keys, now);
    expect(shared.budgetBytes(now)).toBe(Math.ceil(1.25 * 200 * 18_750)); // 4.7 MB
  });

  it('keeps the best recent rate through a pause in sending, and forgets it after a few seconds', () => {
    const shared = sharedAt(0);
    shared.noteRoundTrip(50);
    let now = deliver(shared, 2500, 0, 400);
    now = deliver(shared, 10, now, 500); // the bulk ended: only keystrokes are acknowledged
    shared.noteSent(bulk, now);
    shared.noteSent(keys, now);
    expect(shared.deliveryRate(now)).toBeCloseTo(2500, 6);
    now = deliver(shared, 10, now, 2500);
    expect(shared.deliveryRate(now)).toBeCloseTo(10, 6);
  });

  it('holds a session that sends alone loosely: two products while its rate grows, then a quarter more, and 20 ms', () => {
    const alone = budget(16 * 1024);
    expect(alone.budgetBytes(0)).toBe(Number.POSITIVE_INFINITY); // nothing measured: only the window
    alone.noteRoundTrip(50);
    // A transfer starting up on 20 Mbit/s and 50 ms: its rate doubles each round trip.
    let now = deliver(alone, 1, 0, 1);
    for (const bytesPerMs of [300, 600, 1200, 2400]) now = deliver(alone, bytesPerMs, now, 50);
    alone.noteSent(bulk, now);
    expect(alone.isShared(now)).toBe(false);
    expect(alone.budgetBytes(now)).toBe((2 * 50 + 20) * 2400); // room to double again
    // Then it stays at the path's rate: the path is full, and a quarter of a product is headroom
    // enough (where a 2 MiB window would leave 0.8 s of sending queued for the first keystroke).
    now = deliver(alone, 2400, now, 200);
    expect(alone.budgetBytes(now)).toBe((1.25 * 50 + 20) * 2400);
    const loopback = budget();
    loopback.noteRoundTrip(0.05);
    const t = deliver(loopback, 1_000_000, 0, 100); // 8 Gbit/s
    loopback.noteSent(bulk, t);
    expect(loopback.budgetBytes(t)).toBeGreaterThan(16 * 1024 * 1024); // more than any window
  });

  it('with an express lane, holds a session alone to the product and a tenth, and 20 ms; shared, to the product and a tenth', () => {
    const main = budget(16 * 1024);
    expect(main.budgetBytes(0, true)).toBe(Number.POSITIVE_INFINITY); // nothing measured: only the window
    main.noteRoundTrip(50);
    let now = deliver(main, 1, 0, 1);
    for (const bytesPerMs of [300, 600, 1200, 2400]) now = deliver(main, bytesPerMs, now, 50);
    main.noteSent(bulk, now);
    expect(main.budgetBytes(now, true)).toBe((2 * 50 + 20) * 2400); // room to double, as without the lane
    now = deliver(main, 2400, now, 200);
    expect(main.budgetBytes(now, true)).toBe(Math.ceil((EXPRESS_MAIN_BDP_GAIN * 50 + 20) * 2400));
    expect(main.budgetBytes(now, true)).toBeLessThan(main.budgetBytes(now, false));
    main.noteSent(keys, now); // a keystroke, on either lane: the link is shared
    expect(main.isShared(now)).toBe(true);
    // Keystrokes on their own lane wait only in the path's queue: the main lane fills the path and
    // leaves a tenth of a product there, where without the lane a quarter is the keystrokes' headroom.
    expect(main.budgetBytes(now, true)).toBe(Math.ceil(EXPRESS_MAIN_BDP_GAIN * 50 * 2400));
    expect(main.budgetBytes(now, false)).toBe(Math.ceil(SHARED_LINK_BDP_GAIN * 50 * 2400));
  });

  it('forgets the round trips and the rate on a new path (the client roamed) and starts from the floor', () => {
    const shared = sharedAt(0);
    shared.noteRoundTrip(10);
    deliver(shared, 100_000, 0, 100);
    shared.newPath();
    expect(shared.minRttMs).toBeNull();
    expect(shared.deliveryRate(100)).toBeNull();
    expect(shared.budgetBytes(0)).toBe(FLOOR);
    shared.noteRoundTrip(0.1);
    expect(shared.budgetBytes(0)).toBe(FLOOR);
  });
});
