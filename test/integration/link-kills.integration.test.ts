import { describe, expect, it } from 'vitest';
import { useCleanup } from '../helpers/cleanup.js';
import { echoKillingEachRound, killConnections } from '../helpers/faults.js';
import { echoTransfer } from '../helpers/targets.js';
import { startTunnel } from '../helpers/tunnel.js';

const defer = useCleanup();

describe('link killed from outside (ss -K) while bulk data flows', () => {
  it('delivers 64 MiB each way intact across at least 20 kills, and the user socket never notices', async () => {
    const { target, sproxy, cproxy, connect } = await startTunnel(defer);
    const user = await connect();
    const totalBytes = 64 * 1024 * 1024;
    // Kill the link (both ends) at 30 random points of the transfer, one in each 30th of it, placed
    // by bytes echoed so far so that the kills land during the transfer however fast the machine is.
    const stratum = (totalBytes * 0.95) / 30;
    const killPoints = Array.from({ length: 30 }, (_, i) => Math.floor((i + 0.2 + Math.random() * 0.6) * stratum));
    let kills = 0;
    const transfer = await echoTransfer(user.socket, totalBytes, 64 * 1024, (receivedBytes) => {
      // A point passed while the link is being re-established waits for the next progress.
      if (killPoints.length > 0 && (killPoints[0] as number) <= receivedBytes && killConnections(sproxy.port) > 0) {
        kills++;
        while (killPoints.length > 0 && (killPoints[0] as number) <= receivedBytes) killPoints.shift();
      }
    });

    expect(transfer.receivedBytes).toBe(totalBytes);
    expect(transfer.receivedHash).toBe(transfer.sentHash);
    expect(kills).toBeGreaterThanOrEqual(20);
    // The session is still usable after all of it.
    const after = await echoTransfer(user.socket, 1024);
    expect(after.receivedHash).toBe(after.sentHash);
    expect(user.errors).toEqual([]);
    expect(user.closed).toBe(false);
    expect(target.errors).toEqual([]);
    expect(target.sockets).toHaveLength(1);
    expect(cproxy.proc.countLogs((l) => l.msg === 'link down')).toBeGreaterThanOrEqual(20);
  });

  it('with the smallest --window (one frame) on both sides, stop-and-wait still delivers every byte across kills', async () => {
    const args = ['--window', '64'];
    const { target, sproxy, connect } = await startTunnel(defer, { sproxyArgs: args, cproxyArgs: args });
    const user = await connect();
    const transfer = await echoKillingEachRound(user.socket, sproxy.port, 4);
    expect(transfer.receivedHash).toBe(transfer.sentHash);
    expect(transfer.kills).toBe(4);
    expect(user.errors).toEqual([]);
    expect(target.sockets).toHaveLength(1);
  });
});
