import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { useCleanup } from '../helpers/cleanup.js';
import { readToEnd, sha256, startTarget } from '../helpers/targets.js';
import { startTunnel } from '../helpers/tunnel.js';

const defer = useCleanup();

describe('half-close', () => {
  it('delivers the data then EOF to the target, and the target\'s reply still reaches the client', async () => {
    const seenByTarget: Array<{ data: Buffer; sawEof: boolean }> = [];
    // The target reads to EOF, then answers with the digest of what it got and closes.
    const target = await startTarget((socket) => {
      void readToEnd(socket).then((data) => {
        seenByTarget.push({ data, sawEof: true });
        socket.end(`got ${data.length} bytes, sha256 ${sha256(data)}\n`);
      });
    });
    const { sproxy, cproxy, connect } = await startTunnel(defer, { target });
    const user = await connect();
    const payload = randomBytes(3 * 1024 * 1024 + 17);
    user.socket.end(payload);
    const reply = (await readToEnd(user.socket)).toString('utf8');

    expect(reply).toBe(`got ${payload.length} bytes, sha256 ${sha256(payload)}\n`);
    expect(seenByTarget).toHaveLength(1);
    expect(seenByTarget[0]?.sawEof).toBe(true);
    expect(user.errors).toEqual([]);
    await cproxy.proc.waitForLog((l) => l.msg === 'session closed' && l['reason'] === 'closed');
    await sproxy.proc.waitForLog((l) => l.msg === 'session closed' && l['reason'] === 'closed');
  });
});
