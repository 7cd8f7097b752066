import { describe, expect, it } from 'vitest';
import { SHARED_LINK_REFERENCE_BYTES_PER_MS, SharedLinkBudget } from '../../../common/engine/shared-link.js';

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

  it('is the floor on a fast path, and grows with the fastest round trip on a slower one', () => {
    const shared = sharedAt(0);
    shared.noteRoundTrip(0.08); // loopback
    expect(shared.budgetBytes(0)).toBe(FLOOR);
    shared.noteRoundTrip(2); // slower samples do not raise the fastest
    expect(shared.minRttMs).toBe(0.08);

    const slow = sharedAt(0);
    slow.noteRoundTrip(10);
    expect(slow.budgetBytes(0)).toBe(10 * SHARED_LINK_REFERENCE_BYTES_PER_MS);
  });

  it('forgets the round trips on a new path (the client roamed) and starts from the floor', () => {
    const shared = sharedAt(0);
    shared.noteRoundTrip(10);
    shared.newPath();
    expect(shared.minRttMs).toBeNull();
    expect(shared.budgetBytes(0)).toBe(FLOOR);
    shared.noteRoundTrip(0.1);
    expect(shared.budgetBytes(0)).toBe(FLOOR);
  });
});
