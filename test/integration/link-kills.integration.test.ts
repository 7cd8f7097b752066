import { describe, expect, it } from 'vitest';
import { useCleanup } from '../helpers/cleanup.js';
import { killConnections } from '../helpers/faults.js';
import { isLinkUp, startCproxy, startSproxy } from '../helpers/proxies.js';
import { connectUser, echoTransfer, startEchoTarget } from '../helpers/targets.js';

const defer = useCleanup();

describe('link killed from outside (ss -K) while bulk data flows', () => {
  it('delivers 64 MiB each way intact across at least 20 kills, and the user socket never notices', async () => {
    const target = await startEchoTarget();
    defer(() => target.close());
    const sproxy = await startSproxy(target.port);
    defer(() => sproxy.proc.stop());
    const cproxy = await startCproxy(sproxy.port);
    defer(() => cproxy.proc.stop());
    await cproxy.proc.waitForLog(isLinkUp);

    const user = await connectUser(cproxy.port);
    defer(() => user.socket.destroy());
    const totalBytes = 64 * 1024 * 1024;
    let finished = false;
    let kills = 0;
    const killer = (async () => {
      // Kill at random moments until the transfer ends, and at least 20 times in all.
      while (!finished || kills < 20) {
        await new Promise((resolve) => setTimeout(resolve, 50 + Math.random() * 250));
        if (killConnections(sproxy.port) > 0) kills++;
        if (finished && kills >= 20) break;
        // After the transfer, wait for each resume so that every kill hits a live link.
        if (finished) await cproxy.proc.waitForNextLog(isLinkUp, 20_000);
      }
    })();
    const transfer = await echoTransfer(user.socket, totalBytes);
    finished = true;
    const killsDuringTransfer = kills;
    await killer;

    expect(transfer.receivedBytes).toBe(totalBytes);
    expect(transfer.receivedHash).toBe(transfer.sentHash);
    expect(kills).toBeGreaterThanOrEqual(20);
    expect(killsDuringTransfer).toBeGreaterThanOrEqual(5);
    // The session is still usable after all of it.
    const after = await echoTransfer(user.socket, 1024);
    expect(after.receivedHash).toBe(after.sentHash);
    expect(user.errors).toEqual([]);
    expect(user.closed).toBe(false);
    expect(target.errors).toEqual([]);
    expect(target.sockets).toHaveLength(1);
    expect(cproxy.proc.countLogs((l) => l.msg === 'link down')).toBeGreaterThanOrEqual(20);
  });
});
