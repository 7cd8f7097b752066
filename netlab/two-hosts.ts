import { execFileSync } from 'node:child_process';

/**
 * Two hosts on one machine: network namespaces joined by a veth pair, the server host at
 * 10.77.0.1 and the client host at 10.77.0.2 (changeable: that is roaming). Needs root and
 * iproute2. Used by `npm run demo:roam` and by the end-to-end tests; wan-hosts.ts joins the same
 * two hosts by an emulated wide-area path instead.
 */
export class TwoHostNetwork {
  static readonly SERVER_ADDRESS = '10.77.0.1';
  static readonly CLIENT_ADDRESS = '10.77.0.2';
  static readonly PREFIX_LENGTH = 24;

  readonly server: string;
  readonly client: string;
  readonly serverDevice: string;
  readonly clientDevice: string;
  #clientAddress: string = TwoHostNetwork.CLIENT_ADDRESS;

  /** `tag` keeps the names of concurrent users apart (interface names are at most 15 bytes). */
  constructor(tag: string) {
    this.server = `etcp-${tag}-srv`;
    this.client = `etcp-${tag}-cli`;
    this.serverDevice = `ve${tag}s`;
    this.clientDevice = `ve${tag}c`;
  }

  get clientAddress(): string {
    return this.#clientAddress;
  }

  /** Builds the hosts, removing leftovers of an earlier run with the same names first. */
  create(): void {
    this.createNamespaces();
    ip('link', 'add', this.serverDevice, 'netns', this.server, 'type', 'veth', 'peer', 'name', this.clientDevice, 'netns', this.client);
    this.configureDevices();
  }

  /** The two namespaces, empty but for their loopback (leftovers of an earlier run removed first). */
  protected createNamespaces(): void {
    this.destroyNamespaces();
    ip('netns', 'add', this.server);
    ip('netns', 'add', this.client);
  }

  /** Addresses on the hosts' devices (already in their namespaces), and everything up. */
  protected configureDevices(): void {
    ip('-n', this.server, 'addr', 'add', `${TwoHostNetwork.SERVER_ADDRESS}/${TwoHostNetwork.PREFIX_LENGTH}`, 'dev', this.serverDevice);
    ip('-n', this.client, 'addr', 'add', `${this.#clientAddress}/${TwoHostNetwork.PREFIX_LENGTH}`, 'dev', this.clientDevice);
    for (const [ns, device] of [
      [this.server, this.serverDevice],
      [this.client, this.clientDevice],
    ] as const) {
      ip('-n', ns, 'link', 'set', 'lo', 'up');
      ip('-n', ns, 'link', 'set', device, 'up');
    }
  }

  /** The client host moves to `address`: the old one goes first, as when a laptop changes networks. */
  changeClientAddress(address: string): void {
    ip('-n', this.client, 'addr', 'del', `${this.#clientAddress}/${TwoHostNetwork.PREFIX_LENGTH}`, 'dev', this.clientDevice);
    ip('-n', this.client, 'addr', 'add', `${address}/${TwoHostNetwork.PREFIX_LENGTH}`, 'dev', this.clientDevice);
    this.#clientAddress = address;
  }

  /** The prefix that runs a command on a host: `ip netns exec NS`. */
  prefix(ns: string): string[] {
    return ['ip', 'netns', 'exec', ns];
  }

  /** Removes both hosts, killing whatever still runs in them. */
  destroyNamespaces(): void {
    for (const ns of [this.server, this.client]) {
      try {
        const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
        for (const pid of pids.split('\n').filter(Boolean)) process.kill(Number(pid), 'SIGKILL');
      } catch {
        // no such namespace
      }
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        // no such namespace
      }
    }
  }
}

export function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}
