import { execFileSync } from 'node:child_process';
import { TwoHostNetwork } from './two-hosts.js';

/**
 * What roaming does to the client host of TwoHostNetwork, beyond changeClientAddress (an address
 * replaced by another): the faults that the roaming tests and the bench's roaming section share.
 */

function onClient(hosts: TwoHostNetwork, command: string[]): string {
  return execFileSync('ip', ['netns', 'exec', hosts.client, ...command], { encoding: 'utf8' });
}

/**
 * Wi-Fi to LTE: the old network swallows everything without a word (the client's first address
 * stays, but its packets are dropped both ways), a new address comes up, and the route to the
 * server now leaves from it.
 */
export function preferNewAddress(hosts: TwoHostNetwork, address: string): void {
  const old = hosts.clientAddress;
  onClient(hosts, ['iptables', '-I', 'OUTPUT', '-s', old, '-j', 'DROP']);
  onClient(hosts, ['iptables', '-I', 'INPUT', '-d', old, '-j', 'DROP']);
  onClient(hosts, ['ip', 'addr', 'add', `${address}/${TwoHostNetwork.PREFIX_LENGTH}`, 'dev', hosts.clientDevice]);
  onClient(hosts, ['ip', 'route', 'add', `${TwoHostNetwork.SERVER_ADDRESS}/32`, 'dev', hosts.clientDevice, 'src', address]);
}

/** The client's local port of its one established connection to `serverPort`. */
export function clientPortTo(hosts: TwoHostNetwork, serverPort: number): number {
  const line = onClient(hosts, ['ss', '-Htn', 'state', 'established', `( dport = :${serverPort} )`]).trim();
  const port = Number(line.split(/\s+/)[2]?.split(':').at(-1));
  if (!Number.isInteger(port)) throw new Error(`no connection to port ${serverPort} on ${hosts.client}: ${JSON.stringify(line)}`);
  return port;
}

/**
 * A middlebox that forgot one connection (a NAT's mapping timed out): its packets are dropped
 * both ways, silently; new connections go through.
 */
export function forgetConnection(hosts: TwoHostNetwork, clientPort: number): void {
  onClient(hosts, ['iptables', '-I', 'OUTPUT', '-p', 'tcp', '--sport', String(clientPort), '-j', 'DROP']);
  onClient(hosts, ['iptables', '-I', 'INPUT', '-p', 'tcp', '--dport', String(clientPort), '-j', 'DROP']);
}
