import { describe, expect, it } from 'vitest';
import { useCleanup } from '../helpers/cleanup.js';
import { dropPackets } from '../helpers/faults.js';
import { echoTransfer } from '../helpers/targets.js';
import { startTunnel } from '../helpers/tunnel.js';

const defer = useCleanup();

describe('silent loss: packets dropped, no RST', () => {
  it('declares the link dead within the timeout and resumes the session intact once the path returns', async () => {
    const { target, sproxy, cproxy, connect } = await startTunnel(defer);
    const user = await connect();
    const before = await echoTransfer(user.socket, 256 * 1024);
    expect(before.receivedHash).toBe(before.sentHash);

    const restore = dropPackets(sproxy.port);
    defer(restore);
    const droppedAt = Date.now();
    // Data written into the outage must wait in the queues and arrive afterwards.
    const during = echoTransfer(user.socket, 1024 * 1024);
    const down = await cproxy.proc.waitForNextLog((l) => l.msg === 'link down', 15_000, 'link down');
    const detectedAfterMs = Date.now() - droppedAt;
    expect(down['code']).toBe('ETCP_ERR_LINK_DEAD');
    // Dead after 3 s of silence, checked without per-packet timers: well under 3 s + slack.
    expect(detectedAfterMs).toBeLessThan(3000 + 2500);
    await sproxy.proc.waitForLog((l) => l.msg === 'link down' && l['code'] === 'ETCP_ERR_LINK_DEAD', 15_000);

    restore();
    const transfer = await during;
    expect(transfer.receivedHash).toBe(transfer.sentHash);
    const resumed = await cproxy.proc.waitForLog((l) => l.msg === 'link up: sessions resumed');
    expect(resumed['sessions']).toBe(1);
    expect(user.errors).toEqual([]);
    expect(user.closed).toBe(false);
    expect(target.sockets).toHaveLength(1);
    expect(target.errors).toEqual([]);
  });
});
