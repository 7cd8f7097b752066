import { execFileSync } from 'node:child_process';
import type { Socket } from 'node:net';
import { echoInRounds, type Transfer } from './targets.js';

/**
 * Kills every established TCP connection to or from `port` on this host, from outside the
 * processes, as a broken path or a NAT timeout would (`ss -K`, needs root).
 * Returns how many sockets were killed.
 */
export function killConnections(port: number): number {
  const output = execFileSync('ss', ['-K', '-tn', 'state', 'established', `( dport = :${port} or sport = :${port} )`], {
    encoding: 'utf8',
  });
  return output.split('\n').filter((line) => line.includes(`:${port}`)).length;
}

/**
 * Silently drops every packet to or from `port` on loopback (no RST, no ICMP), as a dead Wi-Fi
 * does. Returns the function that restores the path. Needs root and iptables.
 */
export function dropPackets(port: number): () => void {
  const rules = [
    ['INPUT', '-p', 'tcp', '-i', 'lo', '--dport', String(port), '-j', 'DROP'],
    ['INPUT', '-p', 'tcp', '-i', 'lo', '--sport', String(port), '-j', 'DROP'],
  ];
  for (const rule of rules) execFileSync('iptables', ['-I', ...rule]);
  let restored = false;
  return () => {
    if (restored) return;
    restored = true;
    for (const rule of rules) execFileSync('iptables', ['-D', ...rule]);
  };
}

/**
 * Echoes `rounds` blocks of 1 MiB on `socket`, killing every connection on `linkPort` while each
 * block is in flight. Each block's echo can only come back over a resumed link, so every round's
 * kill finds a link to kill: `kills` should equal `rounds`.
 */
export async function echoKillingEachRound(socket: Socket, linkPort: number, rounds: number): Promise<Transfer & { kills: number }> {
  let kills = 0;
  const transfer = await echoInRounds(socket, rounds, 1024 * 1024, () => {
    kills += killConnections(linkPort) > 0 ? 1 : 0;
  });
  return { ...transfer, kills };
}
