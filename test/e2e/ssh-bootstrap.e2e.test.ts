import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { decodeBootstrapLine } from '../../common/ops/bootstrap-line.js';
import { ProxyProcess, REPO_ROOT } from '../helpers/proxies.js';
import { HostCommand, describeResult, prepareSsh, sleep, sshClientOptions, waitUntil, type SshFiles } from './ssh-support.js';
import { waitForPort } from './pair.js';
import { TwoHosts, requireRoot } from './topology.js';

/**
 * `cproxy --ssh root@SERVER` between two hosts: the real ssh client on the client host starts the
 * built sproxy through the real sshd of the server host, whose PATH has it, and cproxy links to
 * it with the secret ssh carried back. With no forward given, cproxy's port reaches that sshd: a
 * roaming ssh session, which must outlive link kills and an address change.
 *
 * The `sproxy` on the server's PATH is the built one behind a two-line wrapper that also keeps a
 * copy of what it prints (the announcement): the test has to know the secret to look for it in
 * every process's arguments and environment, and in the logs.
 */

const USER_PORT = 5200;
const PORT_RANGE = { low: 2022, high: 2030 };
const ROAMED_ADDRESS = '10.77.0.3';
const REMOTE_LOOP = 'for i in $(seq 1 80); do echo N$i; sleep 0.1; done';

interface Server {
  ssh: SshFiles;
  /** Where the wrapper keeps the announcements, and the bootstrap sproxy logs (XDG_STATE_HOME). */
  announcements: string;
  logFile: string;
}

describe('cproxy --ssh: one command starts sproxy through ssh and links to it', () => {
  let hosts: TwoHosts | undefined;
  let dir: string | undefined;
  let cproxy: ProxyProcess | undefined;

  beforeEach(() => {
    requireRoot();
    hosts = new TwoHosts('boot');
    hosts.create();
    dir = mkdtempSync(join(tmpdir(), 'etcp-e2e-boot-'));
  });

  afterEach(async () => {
    try {
      await cproxy?.stop();
    } finally {
      await hosts?.destroy();
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
      hosts = dir = cproxy = undefined;
    }
  });

  /** sshd on the server host's own address, its sessions' PATH holding the wrapped built sproxy. */
  async function startServer(h: TwoHosts, workDir: string): Promise<Server> {
    const bin = join(workDir, 'bin');
    const state = join(workDir, 'state');
    const announcements = join(workDir, 'announcements');
    mkdirSync(bin);
    const wrapper = join(bin, 'sproxy');
    writeFileSync(
      wrapper,
      ['#!/bin/bash', 'set -o pipefail', `"${process.execPath}" "${join(REPO_ROOT, 'bin', 'sproxy.js')}" "$@" | tee -a "${announcements}"`, ''].join('\n'),
    );
    chmodSync(wrapper, 0o755);
    const ssh = prepareSsh(workDir, TwoHosts.SERVER_ADDRESS, [`SetEnv PATH=${bin}:${dirname(process.execPath)}:/usr/bin:/bin XDG_STATE_HOME=${state}`]);
    h.spawn(h.server, ['/usr/sbin/sshd', '-D', '-e', '-f', ssh.config]);
    await waitForPort(h, h.server, 22);
    return { ssh, announcements, logFile: join(state, 'eternal-tcp', 'sproxy-bootstrap.log') };
  }

  /** cproxy --ssh on the client host, with the test's key and no prompts. */
  function startCproxy(h: TwoHosts, server: Server, extra: string[] = [], key = server.ssh.clientKey, portRange = `${PORT_RANGE.low}-${PORT_RANGE.high}`): ProxyProcess {
    const sshOptions = ['StrictHostKeyChecking=no', 'UserKnownHostsFile=/dev/null', 'BatchMode=yes', 'LogLevel=ERROR', `IdentityFile=${key}`];
    return new ProxyProcess(
      'cproxy',
      [
        '--ssh', `root@${TwoHosts.SERVER_ADDRESS}`, ...sshOptions.flatMap((option) => ['--ssh-option', option]),
        '--port-range', portRange, '--listen', `127.0.0.1:${USER_PORT}`, '--log-format', 'json', '--log-level', 'debug', ...extra,
      ],
      h.prefix(h.client),
    );
  }

  it('a roaming ssh session survives 5 link kills and an address change; no process ever holds the secret in its arguments or environment', async () => {
    const h = hosts as TwoHosts;
    const server = await startServer(h, dir as string);
    const proc = (cproxy = startCproxy(h, server));
    const started = await proc.waitForLog((line) => line.msg === 'sproxy started through ssh; ssh has exited', 30_000);
    await proc.waitForLog((line) => line.msg === 'link up', 10_000);
    const linkPort = Number(String(started['server']).split(':').pop());
    expect(linkPort).toBeGreaterThanOrEqual(PORT_RANGE.low);
    expect(linkPort).toBeLessThanOrEqual(PORT_RANGE.high);
    // ssh has done its part: nothing of it runs on either host.
    expect(processesWith((cmdline) => cmdline.startsWith('ssh\0') && cmdline.includes('--bootstrap'))).toEqual([]);

    const session = new HostCommand(h, h.client, ['ssh', '-p', String(USER_PORT), ...sshClientOptions(server.ssh), 'root@127.0.0.1', REMOTE_LOOP], 90_000);
    await waitUntil(() => session.stdout.includes('N3\n') || session.finished, 30_000);
    let kills = 0;
    for (let round = 0; round < 5 && !session.finished; round++) {
      const resumed = proc.waitForNextLog((line) => line.msg === 'link up: sessions resumed', 15_000, "'link up: sessions resumed'");
      if (h.killLink(linkPort) > 0) {
        kills++;
        await resumed;
      } else {
        resumed.catch(() => undefined);
      }
      await sleep(400);
    }
    const roamed = proc.waitForNextLog((line) => line.msg === 'link up: sessions resumed', 20_000, 'a resume after the address change');
    h.changeClientAddress(ROAMED_ADDRESS);
    await roamed;
    const result = await session.result;

    expect(kills, 'kills that hit an established link').toBeGreaterThanOrEqual(4);
    expect(result.code, describeResult('ssh through the bootstrapped link', result)).toBe(0);
    expect(result.stdout).toBe(Array.from({ length: 80 }, (_, i) => `N${i + 1}\n`).join(''));
    expect(proc.countLogs((line) => line.msg === 'session lost; closing the user connection')).toBe(0);

    // The secret: in the announcement only (which the wrapper kept), nowhere else.
    const announcement = decodeBootstrapLine(readFileSync(server.announcements, 'utf8').trim());
    // The secret as it would show (its digits), and as the line carried it (their hex).
    const secretText = announcement?.secret.toString('latin1') ?? 'no announcement';
    const secretHex = announcement?.secret.toString('hex') ?? 'no announcement';
    const holdsSecret = (text: string): boolean => text.includes(secretText) || text.includes(secretHex);
    expect(announcement?.port).toBe(linkPort);
    expect(secretText).toMatch(/^[0-9a-f]{64}$/);
    expect(processesWith(holdsSecret, 'environ')).toEqual([]);
    expect(processesWith(holdsSecret)).toEqual([]);
    const serving = processesWith((cmdline) => cmdline.includes('--bootstrap-child'));
    expect(serving, 'the one bootstrap sproxy, detached').toHaveLength(1);
    expect(holdsSecret(readFileSync(server.logFile, 'utf8'))).toBe(false);
    expect(holdsSecret(JSON.stringify(proc.logs) + proc.rawStderr.join('\n'))).toBe(false);

    // cproxy's clean exit tells sproxy, which exits.
    await proc.stop();
    expect(await waitUntil(() => processesWith((cmdline) => cmdline.includes('--bootstrap-child')).length === 0, 5000), 'the bootstrap sproxy exited after cproxy did').toBe(true);
  }, 150_000);

  it.each([
    ['a key the server does not take', 'wrong-key', /^cproxy: ssh to root@10\.77\.0\.1 failed \(status 255\): .*Permission denied/],
    ['no sproxy on the server', 'no-sproxy', /^cproxy: sproxy is not installed on root@10\.77\.0\.1: the remote command "\/nowhere\/sproxy" was not found \(status 127\)/],
    ['every port of the range taken', 'full-range', /^cproxy: the remote sproxy on root@10\.77\.0\.1 failed \(status 1\): sproxy: no free port in 22 to listen on/],
    ['a firewall in the way', 'firewall', new RegExp(`^cproxy: sproxy started on root@10\\.77\\.0\\.1, but its port ${PORT_RANGE.low} on 10\\.77\\.0\\.1 could not be reached within 3000 ms .*is TCP port ${PORT_RANGE.low} \\(--port-range ${PORT_RANGE.low}-${PORT_RANGE.high}\\) open in a firewall`)],
  ] as const)('fails with a non-zero status and a one-line reason: %s', async (_name, failure, reason) => {
    const h = hosts as TwoHosts;
    const workDir = dir as string;
    const server = await startServer(h, workDir);
    let extra: string[] = [];
    let key = server.ssh.clientKey;
    let portRange: string | undefined;
    if (failure === 'wrong-key') key = join(workDir, 'ssh_host_ed25519_key');
    if (failure === 'no-sproxy') extra = ['--remote-command', '/nowhere/sproxy'];
    // sshd holds port 22 of the server's address: a range of that port alone is full.
    if (failure === 'full-range') portRange = '22';
    if (failure === 'firewall') {
      h.run(h.server, ['iptables', '-I', 'INPUT', '-p', 'tcp', '--dport', `${PORT_RANGE.low}:${PORT_RANGE.high}`, '-j', 'DROP']);
      extra = ['--connect-timeout', '1000'];
    }
    const startedAt = Date.now();
    const proc = (cproxy = startCproxy(h, server, extra, key, portRange));
    const exit = await Promise.race([proc.exited, sleep(20_000).then(() => null)]);
    expect(exit, 'cproxy ended on its own').not.toBeNull();
    expect(exit?.code).toBe(1);
    expect(Date.now() - startedAt, 'within a few seconds').toBeLessThan(15_000);
    expect(proc.rawStderr, 'one line, the reason').toHaveLength(1);
    expect(proc.rawStderr[0]).toMatch(reason);
  }, 60_000);
});

/** Pids of processes whose /proc/PID/`file` (NUL-separated) matches; this process and its own aside. */
function processesWith(matches: (text: string) => boolean, file: 'cmdline' | 'environ' = 'cmdline'): number[] {
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if (matches(readFileSync(`/proc/${name}/${file}`, 'latin1'))) found.push(Number(name));
    } catch {
      // gone, or not ours to read
    }
  }
  return found;
}
