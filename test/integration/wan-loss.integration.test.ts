import { describe, expect, it } from 'vitest';
import { WanHosts } from '../../netlab/wan-hosts.js';
import { useCleanup } from '../helpers/cleanup.js';
import { startCproxy, startSproxy, isLinkUp } from '../helpers/proxies.js';
import { secretFile } from '../helpers/secrets.js';
import { startWanPeer } from '../helpers/wan-peer.js';

const TARGET_PORT = 7000;
const LINK_PORT = 6202;
const UPLOAD_SECONDS = 4;
const DOWNLOAD_BYTES = 16 * 1024 * 1024;

/**
 * The path of the benchmark's loss case (50 Mbit/s, 25 ms one way, 1% of packets dropped at
 * random each way), with a secret: a counted upload and a counted download through the tunnel,
 * each checked byte by byte at its far end (the pattern breaks wherever a byte is lost, repeated
 * or reordered). The rates against direct TCP are the benchmark's (`npm run bench -- --only
 * wan-loss`); this shows that what TCP's recovery under the link carries arrives whole, and that
 * loss alone takes no link down.
 */
describe('1% random loss on an emulated WAN (with a secret)', () => {
  const defer = useCleanup();

  it('carries a counted upload and a counted download, every byte intact, on one link', async () => {
    const hosts = new WanHosts(`l${process.pid % 10_000}`);
    await hosts.open({ rateMbit: 50, delayMs: 25, queueMs: 100, loss: 0.01 });
    defer(() => hosts.close());
    const onHost = (ns: string, args: string[]): Promise<string> => startWanPeer(defer, ns, args).output;
    const sink = onHost(hosts.server, ['server', `127.0.0.1:${TARGET_PORT}`]);
    const { file } = secretFile(defer);
    const secret = ['--secret-file', file];
    const sproxy = await startSproxy(TARGET_PORT, secret, `${WanHosts.SERVER_ADDRESS}:${LINK_PORT}`, hosts.prefix(hosts.server));
    defer(() => sproxy.proc.stop());
    const cproxy = await startCproxy(`${WanHosts.SERVER_ADDRESS}:${LINK_PORT}`, secret, '127.0.0.1:5200', hosts.prefix(hosts.client));
    defer(() => cproxy.proc.stop());
    await cproxy.proc.waitForLog(isLinkUp);
    const before = await hosts.stats();

    const { sent } = JSON.parse(await onHost(hosts.client, ['counted', '127.0.0.1:5200', String(UPLOAD_SECONDS)])) as { sent: number };
    const uploaded = JSON.parse(await sink) as { received: number; intact: boolean };
    const downloaded = JSON.parse(await onHost(hosts.client, ['fetch', '127.0.0.1:5200', String(DOWNLOAD_BYTES)])) as { received: number; intact: boolean };
    const after = await hosts.stats();

    // The path did drop packets, both ways (the download's acks go up, the upload's down).
    expect(after.upload.droppedLoss - before.upload.droppedLoss).toBeGreaterThan(10);
    expect(after.download.droppedLoss - before.download.droppedLoss).toBeGreaterThan(10);
    expect(sent).toBeGreaterThan(4 * 1024 * 1024);
    expect(uploaded).toEqual({ received: sent, intact: true });
    expect(downloaded).toEqual({ received: DOWNLOAD_BYTES, intact: true });
    // TCP under the link recovered every loss: the link never went down.
    expect(cproxy.proc.logs.filter((line) => line.msg === 'link down')).toEqual([]);
  }, 90_000);
});
