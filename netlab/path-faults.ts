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

/** The client's local ports of its established connections to `serverPort` (a link and its express lane). */
export function clientPortsTo(hosts: TwoHostNetwork, serverPort: number): number[] {
  const listing = onClient(hosts, ['ss', '-Htn', 'state', 'established', `( dport = :${serverPort} )`]);
  const lines = listing.split('\n').filter((line) => line.trim() !== '');
  const ports = lines.map((line) => Number(line.trim().split(/\s+/)[2]?.split(':').at(-1)));
  if (ports.length === 0 || !ports.every(Number.isInteger)) throw new Error(`no connection to port ${serverPort} on ${hosts.client}: ${JSON.stringify(listing)}`);
  return ports;
}

/**
 * A middlebox that forgot one connection (a NAT's mapping timed out): its packets are dropped
 * both ways, silently; new connections go through.
 */
export function forgetConnection(hosts: TwoHostNetwork, clientPort: number): void {
  onClient(hosts, ['iptables', '-I', 'OUTPUT', '-p', 'tcp', '--sport', String(clientPort), '-j', 'DROP']);
  onClient(hosts, ['iptables', '-I', 'INPUT', '-p', 'tcp', '--dport', String(clientPort), '-j', 'DROP']);
}

/** A middlebox that forgot every connection to `serverPort` at once (a NAT that restarted): the whole link. */
export function forgetConnectionsTo(hosts: TwoHostNetwork, serverPort: number): void {
  for (const port of clientPortsTo(hosts, serverPort)) forgetConnection(hosts, port);
}
