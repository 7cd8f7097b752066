/**
 * The things the bench measures through, each listening on a port and carrying connections to a
 * target: the tunnel (cproxy + sproxy, plain or TLS link), the plain two-hop Node relay (the
 * baseline), socat and ssh -L. A section starts one, measures, and stops it.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NODE, ROOT, peerScript, procs, secretFile, tempDir } from './harness/context.js';
import type { Child } from './harness/processes.js';
import { HOST, establishedOn, freePort, isListening, run, sleep, waitFor } from './harness/system.js';
import { sshdConfig } from './peers/sshd-config.js';

/** Something listening on `port` that carries connections to a target, and how to stop it. */
export interface Path {
  name: string;
  port: number;
  children: Child[];
  /** The tunnel's link port (tunnels only). */
  linkPort?: number;
  /** Port of the connection between the two hops (the link, or the plain relays' middle hop). */
  innerPort?: number;
  cproxy?: Child;
  sproxy?: Child;
}

export async function stopPath(path: Path): Promise<void> {
  // cproxy first, so that sproxy sees a GOAWAY rather than a lost link.
  for (const child of path.children) await procs.stop(child);
}

export interface TunnelOptions {
  tls?: boolean;
  sproxyArgs?: string[];
  cproxyArgs?: string[];
  nodeArgs?: string[];
  /** cproxy's and sproxy's --log-level (their logs go to bench-results/logs/). */
  logLevel?: string;
}

export async function startTunnel(name: string, targetPort: number, options: TunnelOptions = {}): Promise<Path> {
  const linkPort = await freePort();
  const port = await freePort();
  const common = ['--log-level', options.logLevel ?? 'warn', ...(options.tls === true ? ['--secret-file', secretFile] : [])];
  /** Starts bin/`proxy`.js and waits until it listens on `listenPort` (or says why it exited). */
  const startProxy = async (proxy: 'sproxy' | 'cproxy', listenPort: number, args: string[]): Promise<Child> => {
    const child = procs.spawn(
      `${name}-${proxy}`,
      NODE,
      [...(options.nodeArgs ?? []), join(ROOT, `bin/${proxy}.js`), '--listen', `${HOST}:${listenPort}`, ...common, ...args],
      { cwd: ROOT },
    );
    await waitFor(() => isListening(listenPort) || !child.alive(), 10_000, `${name}: ${proxy} listening`);
    if (!child.alive()) throw new Error(`${name}: ${proxy} exited: ${child.output().slice(-1000)}`);
    return child;
  };
  const sproxy = await startProxy('sproxy', linkPort, ['--target', `${HOST}:${targetPort}`, ...(options.sproxyArgs ?? [])]);
  const cproxy = await startProxy('cproxy', port, ['--server', `${HOST}:${linkPort}`, ...(options.cproxyArgs ?? [])]);
  // Both ends of the link, seen from loopback.
  await waitFor(() => establishedOn(linkPort) >= 2, 10_000, `${name}: link established`);
  await sleep(200); // HELLO/WELCOME (and the TLS handshake)
  return { name, port, children: [cproxy, sproxy], linkPort, innerPort: linkPort, cproxy, sproxy };
}

export async function startNodeRelay(name: string, targetPort: number): Promise<Path> {
  const middle = await freePort();
  const port = await freePort();
  const second = procs.spawn(`${name}-hop2`, NODE, [peerScript('plain-relay'), String(middle), `${HOST}:${targetPort}`]);
  const first = procs.spawn(`${name}-hop1`, NODE, [peerScript('plain-relay'), String(port), `${HOST}:${middle}`]);
  await waitFor(() => isListening(middle) && isListening(port), 10_000, `${name}: relays listening`);
  return { name, port, children: [first, second], innerPort: middle };
}

export async function startSocat(name: string, targetPort: number): Promise<Path> {
  const middle = await freePort();
  const port = await freePort();
  const second = procs.spawn(`${name}-hop2`, 'socat', [`TCP-LISTEN:${middle},bind=${HOST},reuseaddr,fork`, `TCP:${HOST}:${targetPort},nodelay`]);
  const first = procs.spawn(`${name}-hop1`, 'socat', [`TCP-LISTEN:${port},bind=${HOST},reuseaddr,fork`, `TCP:${HOST}:${middle},nodelay`]);
  await waitFor(() => isListening(middle) && isListening(port), 10_000, `${name}: socat listening`);
  return { name, port, children: [first, second] };
}

let sshd: { port: number; key: string } | null = null;

async function ensureSshd(): Promise<{ port: number; key: string }> {
  if (sshd !== null) return sshd;
  const dir = join(tempDir, 'ssh');
  mkdirSync(dir, { mode: 0o700 });
  const hostKey = join(dir, 'host_ed25519');
  const key = join(dir, 'id_ed25519');
  run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'etcp-bench-host', '-f', hostKey]);
  run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'etcp-bench-client', '-f', key]);
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(`${key}.pub`));
  const port = await freePort();
  const config = join(dir, 'sshd_config');
  writeFileSync(
    config,
    sshdConfig({ hostKey, listenAddress: HOST, port, authorizedKeysFile: join(dir, 'authorized_keys'), extraLines: ['AllowTcpForwarding yes'] }),
  );
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const child = procs.spawn('sshd', '/usr/sbin/sshd', ['-D', '-e', '-f', config]);
  await waitFor(() => isListening(port) || !child.alive(), 10_000, 'sshd listening');
  if (!child.alive()) throw new Error(`sshd exited: ${child.output().slice(-1000)}`);
  sshd = { port, key };
  return sshd;
}

export async function startSsh(name: string, targetPort: number): Promise<Path> {
  const server = await ensureSshd();
  const port = await freePort();
  const ssh = procs.spawn(name, 'ssh', [
    '-N', '-F', '/dev/null', '-i', server.key,
    '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes',
    '-o', 'LogLevel=ERROR', '-o', 'ExitOnForwardFailure=yes', '-o', 'ConnectTimeout=10',
    '-L', `${HOST}:${port}:${HOST}:${targetPort}`, '-p', String(server.port), `root@${HOST}`,
  ]);
  await waitFor(() => isListening(port) || !ssh.alive(), 15_000, `${name}: forward listening`);
  if (!ssh.alive()) throw new Error(`ssh exited: ${ssh.output().slice(-1000)}`);
  return { name, port, children: [ssh] };
}
