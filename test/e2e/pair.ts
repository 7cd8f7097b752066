import type { ChildProcess } from 'node:child_process';
import { startCproxy, startSproxy, type ProxyProcess } from '../helpers/proxies.js';
import { createTemporarySecret } from '../../demo/temporary-secret.js';
import { TwoHosts } from './topology.js';

export const LINK_PORT = 6200;
export const USER_PORT = 5200;

/**
 * cproxy on the client host (127.0.0.1:5200 there) and sproxy on the server host
 * (10.77.0.1:6200), sessions going to `targetPort` on the server host's loopback.
 *
 * With ETCP_E2E_RELAY=plain the pair is replaced by two plain socat relays with the same
 * addresses: no framing, no resume. Every case must fail that way; it is how the suite shows that
 * it tests resume and not merely connectivity.
 */
export interface ProxyPair {
  mode: 'eternal' | 'plain';
  /** Undefined in plain-relay mode. */
  cproxy?: ProxyProcess;
  sproxy?: ProxyProcess;
}

export async function startPair(hosts: TwoHosts, targetPort: number, extra: string[] = []): Promise<ProxyPair> {
  if (process.env['ETCP_E2E_RELAY'] === 'plain') {
    const relays: ChildProcess[] = [
      hosts.spawn(hosts.server, ['socat', `TCP-LISTEN:${LINK_PORT},bind=${TwoHosts.SERVER_ADDRESS},fork,reuseaddr`, `TCP:127.0.0.1:${targetPort}`]),
      hosts.spawn(hosts.client, ['socat', `TCP-LISTEN:${USER_PORT},bind=127.0.0.1,fork,reuseaddr`, `TCP:${TwoHosts.SERVER_ADDRESS}:${LINK_PORT}`]),
    ];
    await waitForPort(hosts, hosts.client, USER_PORT);
    void relays;
    return { mode: 'plain' };
  }
  // The link is keyed by a shared secret, as sproxy requires off loopback.
  const secret = createTemporarySecret();
  const args = ['--secret-file', secret.file, ...extra];
  const sproxy = await startSproxy(targetPort, args, `${TwoHosts.SERVER_ADDRESS}:${LINK_PORT}`, hosts.prefix(hosts.server));
  const cproxy = await startCproxy(`${TwoHosts.SERVER_ADDRESS}:${LINK_PORT}`, args, `127.0.0.1:${USER_PORT}`, hosts.prefix(hosts.client));
  await cproxy.proc.waitForLog((line) => line.msg.startsWith('link up'));
  return { mode: 'eternal', cproxy: cproxy.proc, sproxy: sproxy.proc };
}

export async function stopPair(pair: ProxyPair): Promise<void> {
  await pair.cproxy?.stop();
  await pair.sproxy?.stop();
}

/** Waits until something listens on `port` on a host's loopback (ss), up to 10 s. */
export async function waitForPort(hosts: TwoHosts, ns: string, port: number): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    if (hosts.run(ns, ['ss', '-ltnH', `( sport = :${port} )`]).trim() !== '') return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`nothing listens on port ${port} in ${ns}`);
}
