import { describe, expect, it } from 'vitest';
import { GUARANTEED_QUEUE_BYTES, SendBudget } from '../../../common/engine/send-budget.js';

describe('SendBudget: the proxy-wide bound on send queues', () => {
  it('lets a session queue while the total is under the budget, or while it holds less than its guaranteed share', () => {
    const budget = new SendBudget(1_000_000);
    expect(budget.mayQueue(5_000_000)).toBe(true);
    budget.charge(1_000_000);
    expect(budget.usedBytes).toBe(1_000_000);
    expect(budget.mayQueue(5_000_000)).toBe(false);
    expect(budget.mayQueue(GUARANTEED_QUEUE_BYTES - 1)).toBe(true);
    expect(budget.mayQueue(GUARANTEED_QUEUE_BYTES)).toBe(false);
  });

  it('wakes the sessions that stopped on it, oldest first, once acks bring it under the budget, and no cancelled one', async () => {
    const budget = new SendBudget(1000);
    budget.charge(1500);
    const woken: string[] = [];
    const first = (): void => {
      woken.push('first');
      budget.charge(600); // takes the room again: the third must wait for more
    };
    const second = (): void => void woken.push('second');
    const third = (): void => void woken.push('third');
    budget.waitForRoom(first);
    budget.waitForRoom(second);
    budget.waitForRoom(third);
    budget.cancelWait(second);
    budget.release(100);
    await Promise.resolve();
    expect(woken).toEqual([]); // 1400: still over
    budget.release(1000);
    expect(woken).toEqual([]); // not from inside the ack's handling
    await Promise.resolve();
    expect(woken).toEqual(['first']);
    budget.release(600);
    await Promise.resolve();
    expect(woken).toEqual(['first', 'third']);
    expect(budget.usedBytes).toBe(400);
  });
});
