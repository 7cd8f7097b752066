/**
 * The things the bench measures through, each listening on a port and carrying connections to a
 * target: the tunnel (cproxy + sproxy, plain or TLS link), the plain two-hop Node relay (the
 * baseline), socat and ssh -L. A section starts one, measures, and stops it. The tunnel and ssh
 * can also span the two hosts of the emulated WAN (client end on one, server end on the other).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NODE, ROOT, peerScript, procs, secretFile, tempDir } from './harness/context.js';
import type { Child } from './harness/processes.js';
import { HOST, LOCAL, descendantPids, establishedOn, freePort, isListening, onHost, run, sleep, waitFor, type BenchHost } from './harness/system.js';
import { sshdConfig } from './peers/sshd-config.js';

/** Something listening on `port` that carries connections to a target, and how to stop it. */
export interface Path {
  name: string;
  /** Listening on HOST:port of `host` (LOCAL when not given). */
  port: number;
  host?: BenchHost;
  children: Child[];
  /** The tunnel's link port (tunnels only). */
  linkPort?: number;
  /** Port of the connection between the two hops (the link, or the plain relays' middle hop). */
  innerPort?: number;
  cproxy?: Child;
  sproxy?: Child;
  /**
   * Processes that carry the path's bytes but are not its children, looked up when measured: the
   * sshd session processes of an `ssh -L` forward (the sshd is shared by the run).
   */
  helpers?: () => number[];
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
  /** Where cproxy and sproxy run (both LOCAL when not given); sproxy listens on server.address. */
  client?: BenchHost;
  server?: BenchHost;
}

export async function startTunnel(name: string, targetPort: number, options: TunnelOptions = {}): Promise<Path> {
  const linkPort = await freePort();
  const port = await freePort();
  const client = options.client ?? LOCAL;
  const server = options.server ?? LOCAL;
  const common = ['--log-level', options.logLevel ?? 'warn', ...(options.tls === true ? ['--secret-file', secretFile] : [])];
  /** Starts bin/`proxy`.js on `host` and waits until it listens on `address:listenPort` (or says why it exited). */
  const startProxy = async (proxy: 'sproxy' | 'cproxy', host: BenchHost, address: string, listenPort: number, args: string[]): Promise<Child> => {
    const command = [...(options.nodeArgs ?? []), join(ROOT, `bin/${proxy}.js`), '--listen', `${address}:${listenPort}`, ...common, ...args];
    const child = procs.spawn(`${name}-${proxy}`, ...onHost(host, NODE, command), { cwd: ROOT });
    await waitFor(() => isListening(listenPort, host) || !child.alive(), 10_000, `${name}: ${proxy} listening`);
    if (!child.alive()) throw new Error(`${name}: ${proxy} exited: ${child.output().slice(-1000)}`);
    return child;
  };
  const sproxy = await startProxy('sproxy', server, server.address, linkPort, ['--target', `${HOST}:${targetPort}`, ...(options.sproxyArgs ?? [])]);
  const cproxy = await startProxy('cproxy', client, HOST, port, ['--server', `${server.address}:${linkPort}`, ...(options.cproxyArgs ?? [])]);
  // Both ends of the link: on one host, or one on each.
  const ends = (): number => (client.ns === server.ns ? establishedOn(linkPort, server) : establishedOn(linkPort, client) + establishedOn(linkPort, server));
  await waitFor(() => ends() >= 2, 10_000, `${name}: link established`);
  await sleep(200); // HELLO/WELCOME (and the TLS handshake)
  return { name, port, host: client, children: [cproxy, sproxy], linkPort, innerPort: linkPort, cproxy, sproxy };
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

interface Sshd {
  port: number;
  /** The client's private key. */
  key: string;
  child: Child;
}

let sshKeys: { hostKey: string; key: string; authorizedKeys: string } | null = null;
let localSshd: Sshd | null = null;

/** An sshd on `host`, listening on host.address, that takes the bench's own key. */
async function startSshd(host: BenchHost): Promise<Sshd> {
  const dir = join(tempDir, 'ssh');
  if (sshKeys === null) {
    mkdirSync(dir, { mode: 0o700 });
    const keys = { hostKey: join(dir, 'host_ed25519'), key: join(dir, 'id_ed25519'), authorizedKeys: join(dir, 'authorized_keys') };
    run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'etcp-bench-host', '-f', keys.hostKey]);
    run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'etcp-bench-client', '-f', keys.key]);
    writeFileSync(keys.authorizedKeys, readFileSync(`${keys.key}.pub`));
    sshKeys = keys;
  }
  const port = await freePort();
  const config = join(dir, `sshd_config-${port}`);
  writeFileSync(
    config,
    sshdConfig({ hostKey: sshKeys.hostKey, listenAddress: host.address, port, authorizedKeysFile: sshKeys.authorizedKeys, extraLines: ['AllowTcpForwarding yes'] }),
  );
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const child = procs.spawn(`sshd-${port}`, ...onHost(host, '/usr/sbin/sshd', ['-D', '-e', '-f', config]));
  await waitFor(() => isListening(port, host) || !child.alive(), 10_000, 'sshd listening');
  if (!child.alive()) throw new Error(`sshd exited: ${child.output().slice(-1000)}`);
  return { port, key: sshKeys.key, child };
}

/**
 * ssh -L from `client` to an sshd on `server` (LOCAL: one sshd kept for the whole run; another
 * host: an sshd of its own, stopped with the path), forwarding to the target on the server's
 * loopback.
 */
export async function startSsh(name: string, targetPort: number, client: BenchHost = LOCAL, server: BenchHost = LOCAL): Promise<Path> {
  const sshd = server.ns === null ? (localSshd ??= await startSshd(LOCAL)) : await startSshd(server);
  const port = await freePort();
  const ssh = procs.spawn(name, ...onHost(client, 'ssh', [
    '-N', '-F', '/dev/null', '-i', sshd.key,
    '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes',
    '-o', 'LogLevel=ERROR', '-o', 'ExitOnForwardFailure=yes', '-o', 'ConnectTimeout=10',
    '-L', `${HOST}:${port}:${HOST}:${targetPort}`, '-p', String(sshd.port), `root@${server.address}`,
  ]));
  await waitFor(() => isListening(port, client) || !ssh.alive(), 15_000, `${name}: forward listening`);
  if (!ssh.alive()) throw new Error(`ssh exited: ${ssh.output().slice(-1000)}`);
  return {
    name,
    port,
    host: client,
    children: server.ns === null ? [ssh] : [ssh, sshd.child],
    // The sshd session processes: half of ssh -L's work (decrypting what the client encrypted).
    helpers: () => descendantPids(sshd.child.pid),
  };
}
