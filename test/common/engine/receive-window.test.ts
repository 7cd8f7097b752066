import { describe, expect, it } from 'vitest';
import { UINT32_MAX } from '../../../common/protocol/constants.js';
import { ReceiveWindow } from '../../../common/engine/receive-window.js';

describe('ReceiveWindow', () => {
  it('expects one seq at a time: older ones are duplicates, later ones are ahead, across the wrap', () => {
    const window = new ReceiveWindow(UINT32_MAX);
    expect(window.position(UINT32_MAX)).toBe('expected');
    expect(window.position(UINT32_MAX - 1)).toBe('duplicate');
    expect(window.position(0)).toBe('ahead');
    window.advance();
    expect(window.next).toBe(0);
    expect(window.position(0)).toBe('expected');
    expect(window.position(UINT32_MAX)).toBe('duplicate');
  });

  it('acknowledges what arrived while the consumer keeps up, each ack once', () => {
    const window = new ReceiveWindow(10);
    expect(window.ackPending).toBe(false);
    window.advance();
    window.ackIfKeptUp();
    expect(window.ackPending).toBe(true);
    expect(window.takeAck()).toBe(11);
    expect(window.ackPending).toBe(false);
  });

  it('holds the ack while the consumer is behind, and releases everything when it catches up', () => {
    const window = new ReceiveWindow(10);
    window.advance();
    window.holdAcks();
    window.ackIfKeptUp();
    window.advance();
    window.ackIfKeptUp();
    expect(window.ackable).toBe(10);
    expect(window.ackPending).toBe(false);
    window.catchUp();
    expect(window.consumerBehind).toBe(false);
    expect(window.ackable).toBe(12);
    expect(window.takeAck()).toBe(12);
  });

  it('ackAll acknowledges everything received without releasing the consumer (a RESET)', () => {
    const window = new ReceiveWindow(10);
    window.holdAcks();
    window.advance();
    window.ackAll();
    expect(window.ackable).toBe(11);
    expect(window.consumerBehind).toBe(true);
  });

  it('an ack recorded as sent is not pending (the OPEN that created the session)', () => {
    const window = new ReceiveWindow(10);
    window.markAckedUpTo(9);
    expect(window.ackPending).toBe(true);
    expect(window.takeAck()).toBe(10);
  });
});
