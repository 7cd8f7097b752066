import { describe, expect, it } from 'vitest';
import { DEFAULT_ENGINE_CONFIG } from '../../../common/engine/config.js';
import { ACK_HOLD_MAX_MS, ACK_WAIT_MIN_MS, ackHoldMs, SendScheduler, type Slot } from '../../../common/engine/send-scheduler.js';
import type { Session } from '../../../common/engine/session.js';
import { ManualClock } from '../../helpers/manual-clock.js';

/** A slot waiting for acks since `since` (-1: nothing in flight), on the express lane or not. */
function waiting(since: number, onExpress: boolean): Slot {
  return { ...SendScheduler.slotFor({ id: 1 } as Session), waitingSince: since, onExpress };
}

describe('SendScheduler: how long the link has waited for acks', () => {
  it('is the shortest wait on a lane (a peer holding one session\'s acks is not a dead path), the longer lane counting', async () => {
    const clock = new ManualClock();
    const scheduler = new SendScheduler({ config: DEFAULT_ENGINE_CONFIG, clock });
    await clock.advance(1000);
    expect(scheduler.ackWaitMs([])).toBe(0);
    expect(scheduler.ackWaitMs([waiting(-1, false), waiting(-1, true)])).toBe(0);
    // Two sessions on the main lane: the one whose acks still come decides.
    expect(scheduler.ackWaitMs([waiting(0, false), waiting(900, false)])).toBe(100);
    // The express lane stopped (its keystroke waits 1 s) while the main lane's acks flow: the wait is the express lane's.
    expect(scheduler.ackWaitMs([waiting(900, false), waiting(0, true)])).toBe(1000);
    expect(scheduler.ackWaitMs([waiting(0, false), waiting(950, true)])).toBe(1000);
  });
});

describe('ackHoldMs: how long a keystroke echo\'s ack waits for the next keystroke', () => {
  it('is ACK_HOLD_MAX_MS on a short path; shrinks so that a round trip, the hold and the usual delay stay a round trip under the peer\'s floor; never under the usual delay', () => {
    const delay = 10;
    expect(ackHoldMs(delay, null)).toBe(delay); // nothing measured: the usual delay
    expect(ackHoldMs(delay, 0.1)).toBe(ACK_HOLD_MAX_MS);
    expect(ackHoldMs(delay, 90)).toBe(ACK_HOLD_MAX_MS);
    expect(ackHoldMs(delay, 120)).toBe(ACK_WAIT_MIN_MS - 240 - delay);
    for (const rtt of [10, 50, 100, 120, 140]) expect(rtt + ackHoldMs(delay, rtt) + delay).toBeLessThanOrEqual(ACK_WAIT_MIN_MS - rtt);
    expect(ackHoldMs(delay, 300)).toBe(delay);
    expect(ackHoldMs(0, 300)).toBe(0);
  });
});
