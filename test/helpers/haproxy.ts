import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Defer } from './tunnel.js';

/**
 * The address HAProxy dials sproxy from: not cproxy's 127.0.0.1, so that a log line naming the
 * TCP peer instead of the client a PROXY header names cannot pass for it.
 */
export const HAPROXY_SOURCE_ADDRESS = '127.0.0.3';

export interface Haproxy {
  /** Where clients connect (127.0.0.1). */
  port: number;
  /** What HAProxy printed (warnings, alerts), for a failing test's message. */
  output(): string;
}

/**
 * A real HAProxy (the Debian package) in TCP mode in front of sproxy: it accepts on 127.0.0.1 and
 * opens each connection to sproxy from HAPROXY_SOURCE_ADDRESS with a PROXY protocol v2 header
 * (send-proxy-v2), health-checked as a fleet would be: HAProxy (2.6) checks a send-proxy-v2
 * server with a LOCAL header and a reset. A second backend, which no traffic uses, checks sproxy
 * with plain TCP checks: a connect and a reset so quick that sproxy never sees the connection.
 */
export async function startHaproxy(defer: Defer, sproxyPort: number, checkIntervalMs = 200): Promise<Haproxy> {
  const dir = mkdtempSync(join(tmpdir(), 'etcp-haproxy-'));
  defer(() => rmSync(dir, { recursive: true, force: true }));
  const port = await freePort();
  const config = join(dir, 'haproxy.cfg');
  writeFileSync(
    config,
    [
      'defaults',
      '  mode tcp',
      '  timeout connect 2s',
      '  timeout client 60s',
      '  timeout server 60s',
      'frontend links',
      `  bind 127.0.0.1:${port}`,
      '  default_backend sproxies',
      'backend sproxies',
      `  server sproxy 127.0.0.1:${sproxyPort} send-proxy-v2 source ${HAPROXY_SOURCE_ADDRESS} check inter ${checkIntervalMs}`,
      'backend monitor',
      `  server sproxy 127.0.0.1:${sproxyPort} source ${HAPROXY_SOURCE_ADDRESS} check inter ${checkIntervalMs}`,
      '',
    ].join('\n'),
  );
  const check = spawnSync('haproxy', ['-c', '-q', '-f', config], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`haproxy rejects its config: ${check.stderr}${check.stdout}`);
  // -db: in the foreground, so that it is our child and stops with it.
  const child = spawn('haproxy', ['-db', '-f', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = once(child, 'exit');
  defer(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  });
  await waitListening(port, () => (child.exitCode === null ? null : `haproxy exited (${child.exitCode}): ${output}`));
  return { port, output: () => output };
}

/** A port nobody listens on just now (HAProxy cannot be asked for "any port" and tell us). */
async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Waits until something listens on 127.0.0.1:`port` (asked of the kernel: a probe would reach sproxy). */
async function waitListening(port: number, failure: () => string | null): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const listening = spawnSync('ss', ['-Hltn', `sport = :${port}`], { encoding: 'utf8' }).stdout.trim() !== '';
    if (listening) return;
    const failed = failure();
    if (failed !== null) throw new Error(failed);
    if (Date.now() > deadline) throw new Error(`haproxy does not listen on ${port} after 10 s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * The local ports of `pid`'s established TCP connections to 127.0.0.1:`port`, from the kernel:
 * where cproxy's links come from as HAProxy sees them.
 */
export function sourcePortsOf(pid: number, port: number): number[] {
  const lines = spawnSync('ss', ['-Htnp', 'state', 'established', `dst 127.0.0.1:${port}`], { encoding: 'utf8' }).stdout.split('\n');
  return lines
    .filter((line) => line.includes(`pid=${pid},`))
    .map((line) => Number(/127\.0\.0\.1:(\d+)\s+127\.0\.0\.1:\d+/.exec(line)?.[1]))
    .filter((sourcePort) => Number.isInteger(sourcePort));
}
