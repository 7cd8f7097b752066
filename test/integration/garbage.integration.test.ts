import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { PacketType } from '../../common/protocol/constants.js';
import { encodeHeader } from '../../common/protocol/header.js';
import { useCleanup } from '../helpers/cleanup.js';
import { startTunnel } from '../helpers/tunnel.js';
import { echoTransfer } from '../helpers/targets.js';

const defer = useCleanup();

/** Sends `bytes` on a fresh connection to sproxy and waits for sproxy to close it. */
async function sendGarbage(port: number, bytes: Buffer): Promise<{ peer: string; closedAfterMs: number }> {
  const socket: Socket = connect({ host: '127.0.0.1', port });
  defer(() => socket.destroy());
  socket.on('error', () => {}); // sproxy may reset us; that is one of the accepted outcomes
  await once(socket, 'connect');
  const peer = `127.0.0.1:${socket.localPort}`;
  const startedAt = Date.now();
  const closed = once(socket, 'close');
  socket.write(bytes);
  socket.resume();
  await closed;
  return { peer, closedAfterMs: Date.now() - startedAt };
}

function header(type: number, length: number): Buffer {
  return encodeHeader({ type, sessionId: 0, seq: 0, ack: 0, length });
}

describe('garbage on sproxy\'s port', () => {
  it('logs and closes each bad connection; other sessions go on; sproxy does not crash', async () => {
    const { sproxy, cproxy, connect } = await startTunnel(defer);
    const user = await connect();

    const cases: Array<{ name: string; bytes: Buffer; code: string | string[] }> = [
      // A random first word is almost surely no packet type; force it to be none.
      { name: 'random bytes', bytes: Buffer.concat([Buffer.from([0xff, 0xee, 0xdd, 0xcc]), randomBytes(8192)]), code: 'ETCP_ERR_UNKNOWN_PACKET_TYPE' },
      { name: 'length 0xFFFFFFFF', bytes: header(PacketType.Hello, 0xffff_ffff), code: 'ETCP_ERR_FRAME_TOO_LARGE' },
      { name: 'unknown type', bytes: header(99, 0), code: 'ETCP_ERR_UNKNOWN_PACKET_TYPE' },
      { name: 'DATA before HELLO', bytes: header(PacketType.Data, 0), code: 'ETCP_ERR_HANDSHAKE' },
      // The handshake deadline and the dead-link deadline are both 3 s: either may fire first.
      { name: 'a header and then silence', bytes: header(PacketType.Hello, 20), code: ['ETCP_ERR_HANDSHAKE', 'ETCP_ERR_LINK_DEAD'] },
    ];
    for (const testCase of cases) {
      const { peer, closedAfterMs } = await sendGarbage(sproxy.port, testCase.bytes);
      // Closed at once, or for the silent one after the dead-link timeout (3 s) and not much later.
      expect(closedAfterMs, testCase.name).toBeLessThan(3000 + 2500);
      const logged = await sproxy.proc.waitForLog((l) => l.msg === 'connection rejected' && l['peer'] === peer);
      expect([testCase.code].flat(), testCase.name).toContain(logged['code']);
      const echo = await echoTransfer(user.socket, 32 * 1024);
      expect(echo.receivedHash, testCase.name).toBe(echo.sentHash);
    }
    expect(sproxy.proc.rawStderr).toEqual([]);
    expect(user.errors).toEqual([]);
    expect(cproxy.proc.countLogs((l) => l.msg === 'link down')).toBe(0);
  });
});
