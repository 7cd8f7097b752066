import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { TwoHostNetwork } from '../../netlab/two-hosts.js';

/**
 * The two test hosts of netlab/two-hosts.ts (server 10.77.0.1, client 10.77.0.2), plus what the
 * tests need: running commands on them, faults on the link, and teardown of what they started.
 */
export class TwoHosts extends TwoHostNetwork {
  readonly #children: ChildProcess[] = [];

  constructor(tag = `${process.pid % 100_000}`) {
    super(tag);
  }

  /** Runs a command on a host and returns its stdout. */
  run(ns: string, command: string[], input?: string): string {
    return execFileSync('ip', ['netns', 'exec', ns, ...command], { encoding: 'utf8', ...(input === undefined ? {} : { input }) });
  }

  /** Starts a long-running command on a host; it is killed by destroy(). */
  spawn(ns: string, command: string[]): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', ns, ...command], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.#children.push(child);
    return child;
  }

  /** Silently drops the link's packets on the client host (no RST), until the returned function runs. */
  dropLinkPackets(port: number): () => void {
    const rules = [
      ['OUTPUT', '-p', 'tcp', '-d', TwoHostNetwork.SERVER_ADDRESS, '--dport', String(port), '-j', 'DROP'],
      ['INPUT', '-p', 'tcp', '-s', TwoHostNetwork.SERVER_ADDRESS, '--sport', String(port), '-j', 'DROP'],
    ];
    for (const rule of rules) this.run(this.client, ['iptables', '-I', ...rule]);
    let restored = false;
    return () => {
      if (restored) return;
      restored = true;
      for (const rule of rules) this.run(this.client, ['iptables', '-D', ...rule]);
    };
  }

  /** Kills the established link connections on the server host (`ss -K`); returns how many. */
  killLink(port: number): number {
    const output = this.run(this.server, ['ss', '-K', '-tn', 'state', 'established', `( sport = :${port} )`]);
    return output.split('\n').filter((line) => line.includes(`:${port}`)).length;
  }

  async destroy(): Promise<void> {
    for (const child of this.#children) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await once(child, 'exit');
      }
    }
    this.destroyNamespaces();
  }
}

/** The e2e suite needs root for namespaces, iptables and ss -K; without it, say so and fail. */
export function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new Error('the end-to-end suite needs root (network namespaces, iptables, ss -K): run it with sudo, as CI does');
  }
}
