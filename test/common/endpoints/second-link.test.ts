import { describe, expect, it } from 'vitest';
import { ackWaitLimitMs, probeDeadlineMs, readWelcome } from '../../../common/endpoints/second-link.js';
import { GoAwayCode, LINK_SESSION_ID, PacketType } from '../../../common/protocol/constants.js';
import { encodeReason, encodeWelcome } from '../../../common/protocol/messages.js';
import type { Frame } from '../../../common/protocol/frame-decoder.js';

function frame(type: PacketType, payload: Buffer, ack = 0): Frame {
  return { header: { type, sessionId: LINK_SESSION_ID, seq: 0, ack, length: payload.length }, payload, parts: [payload] };
}

describe('second link: when to probe, how long to wait, what a WELCOME is', () => {
  it('a probe waits four fastest round trips and 150 ms, or the ack timeout if longer, within 200 ms..3 s', () => {
    expect(probeDeadlineMs({ minRttMs: null, ackTimeoutMs: null })).toBe(200);
    expect(probeDeadlineMs({ minRttMs: 0.2, ackTimeoutMs: 1 })).toBe(200); // a LAN
    expect(probeDeadlineMs({ minRttMs: 50, ackTimeoutMs: 120 })).toBe(350);
    expect(probeDeadlineMs({ minRttMs: 50, ackTimeoutMs: 1400 })).toBe(1400); // a busy link's inflated round trips
    expect(probeDeadlineMs({ minRttMs: 600, ackTimeoutMs: 5000 })).toBe(3000);
  });

  it('bytes may wait for an ack the ack timeout, never under 300 ms nor over half the dead-link timeout', () => {
    expect(ackWaitLimitMs({ minRttMs: 0.1, ackTimeoutMs: 2 }, 1500)).toBe(300);
    expect(ackWaitLimitMs({ minRttMs: 300, ackTimeoutMs: 1200 }, 1500)).toBe(1200);
    expect(ackWaitLimitMs({ minRttMs: 100, ackTimeoutMs: null }, 1500)).toBe(550);
    // A round trip timed on a held ack raised the timeout past the dead-link timeout: capped.
    expect(ackWaitLimitMs({ minRttMs: 20, ackTimeoutMs: 5600 }, 1500)).toBe(1500);
    expect(ackWaitLimitMs({ minRttMs: 20, ackTimeoutMs: 5600 }, 100)).toBe(300);
  });

  it('reads WELCOME, and turns a GOAWAY or anything else into the error that ends the link', () => {
    expect(readWelcome(frame(PacketType.Welcome, encodeWelcome(true)))).toMatchObject({ knownClient: true });
    expect(() => readWelcome(frame(PacketType.GoAway, encodeReason('wrong key'), GoAwayCode.Authentication))).toThrow(
      expect.objectContaining({ code: 'ETCP_ERR_AUTH', message: 'sproxy refused the link: wrong key' }),
    );
    expect(() => readWelcome(frame(PacketType.GoAway, encodeReason('full'), GoAwayCode.Limit))).toThrow(
      expect.objectContaining({ code: 'ETCP_ERR_HANDSHAKE' }),
    );
    expect(() => readWelcome(frame(PacketType.Sync, Buffer.alloc(0)))).toThrow(expect.objectContaining({ code: 'ETCP_ERR_PROTOCOL', message: 'expected WELCOME, got Sync' }));
  });
});
