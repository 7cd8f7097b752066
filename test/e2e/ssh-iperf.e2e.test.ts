import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { LINK_PORT, USER_PORT, startPair, stopPair, waitForPort, type ProxyPair } from './pair.js';
import {
  HostCommand,
  describeResult,
  killLinkAndWait,
  prepareSsh,
  sleep,
  sshClientOptions,
  waitUntil,
  type CommandResult,
  type KillRecord,
  type SshFiles,
} from './ssh-support.js';
import { TwoHosts, requireRoot } from './topology.js';

/**
 * Real ssh, scp and iperf3 between two network namespaces, through cproxy and sproxy, while the
 * link between them is killed (ss -K on the server host). The applications must not notice:
 * exit code 0, every byte, in order. With ETCP_E2E_RELAY=plain (plain socat relays) every case
 * here must fail.
 */

const COMMAND_TIMEOUT_MS = 60_000;
const BIG_FILE_BYTES = 50 * 1024 * 1024;
const IPERF_PORT = 5201;
const REMOTE_LOOP = 'for i in $(seq 1 60); do echo N$i; sleep 0.1; done';

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

const isLinkDown = (line: { msg: string }): boolean => line.msg === 'link down';

/** At least `min` kills hit an established link while the command ran, and cproxy saw each go down and come back. */
function expectRealKills(kills: KillRecord[], pair: ProxyPair, min: number): void {
  const summary = JSON.stringify(kills);
  const effective = kills.filter((kill) => kill.killed > 0 && kill.duringCommand);
  expect(effective.length, `kills that destroyed a link during the command: ${summary}`).toBeGreaterThanOrEqual(min);
  expect(
    effective.every((kill) => kill.resumed),
    `cproxy logged 'link up: sessions resumed' after every kill: ${summary}`,
  ).toBe(true);
  const linkDowns = pair.cproxy?.countLogs(isLinkDown) ?? 0;
  expect(linkDowns, "cproxy's 'link down' lines").toBeGreaterThanOrEqual(effective.length);
}

interface IperfSummary {
  bitsPerSecond: number;
}

/** sum_received.bits_per_second of an iperf3 -J report, or an explanation of why there is none. */
function parseIperf(result: CommandResult): IperfSummary {
  let report: unknown;
  try {
    report = JSON.parse(result.stdout);
  } catch {
    throw new Error(`iperf3 printed no JSON report; ${describeResult('iperf3', result)}`);
  }
  if (typeof report !== 'object' || report === null) throw new Error(`iperf3 report is not an object: ${result.stdout.slice(0, 500)}`);
  if ('error' in report) throw new Error(`iperf3 reported an error: ${JSON.stringify(report.error)}`);
  const end: unknown = 'end' in report ? report.end : undefined;
  const received: unknown = typeof end === 'object' && end !== null && 'sum_received' in end ? end.sum_received : undefined;
  const bits: unknown =
    typeof received === 'object' && received !== null && 'bits_per_second' in received ? received.bits_per_second : undefined;
  if (typeof bits !== 'number' || !(bits > 0)) throw new Error(`iperf3 report has no end.sum_received.bits_per_second > 0`);
  return { bitsPerSecond: bits };
}

const mbits = (summary: IperfSummary): string => (summary.bitsPerSecond / 1e6).toFixed(0);

describe('ssh, scp and iperf3 through cproxy/sproxy between two hosts while the link is killed', () => {
  let dir: string | undefined;
  let ssh: SshFiles;
  let bigFile: string;
  let bigFileHash: string;
  let hosts: TwoHosts | undefined;
  let pair: ProxyPair | undefined;

  beforeAll(() => {
    requireRoot();
    dir = mkdtempSync(join(tmpdir(), 'etcp-e2e-ssh-'));
    ssh = prepareSsh(dir);
    bigFile = join(dir, 'random-50MiB.bin');
    const data = randomBytes(BIG_FILE_BYTES);
    writeFileSync(bigFile, data);
    bigFileHash = sha256(data);
  });

  afterAll(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    hosts = new TwoHosts('ssh');
    hosts.create();
  });

  afterEach(async () => {
    try {
      if (pair !== undefined) await stopPair(pair);
    } finally {
      pair = undefined;
      await hosts?.destroy();
      hosts = undefined;
    }
  });

  /** sshd -D on the server host's 127.0.0.1:22. */
  async function startSshd(h: TwoHosts): Promise<void> {
    const sshd: ChildProcess = h.spawn(h.server, ['/usr/sbin/sshd', '-D', '-e', '-f', ssh.config]);
    let log = '';
    sshd.stderr?.setEncoding('utf8').on('data', (chunk: string) => (log += chunk));
    try {
      await waitForPort(h, h.server, 22);
    } catch (error) {
      throw new Error(`sshd did not start (exit ${sshd.exitCode}): ${log}`, { cause: error });
    }
  }

  it('ssh: a remote loop prints N1..N60 whole and in order while the link is killed 4 times', async () => {
    const h = hosts!;
    await startSshd(h);
    const p = (pair = await startPair(h, 22));
    const command = new HostCommand(
      h,
      h.client,
      ['ssh', '-p', String(USER_PORT), ...sshClientOptions(ssh), 'root@127.0.0.1', REMOTE_LOOP],
      COMMAND_TIMEOUT_MS,
    );
    // Kill only once the session streams (past the ssh handshake), and spread the kills over the run.
    await waitUntil(() => command.stdout.includes('N3\n') || command.finished, 20_000);
    const kills: KillRecord[] = [];
    for (let i = 0; i < 4 && !command.finished; i++) {
      kills.push(await killLinkAndWait(h, p, command));
      await sleep(700);
    }
    const result = await command.result;

    expect(result.code, describeResult('ssh', result)).toBe(0);
    const expected = Array.from({ length: 60 }, (_, i) => `N${i + 1}\n`).join('');
    expect(result.stdout).toBe(expected);
    expectRealKills(kills, p, 3);
  }, 90_000);

  it('scp: a 50 MiB random file arrives intact while the link is killed 4 times during the copy', async () => {
    const h = hosts!;
    await startSshd(h);
    const p = (pair = await startPair(h, 22));
    const copy = join(dir!, 'copy.bin');
    // -l (Kbit/s) keeps the copy at 4 s or more, so that the kills land inside it on any machine.
    const command = new HostCommand(
      h,
      h.client,
      ['scp', '-q', '-l', '100000', '-P', String(USER_PORT), ...sshClientOptions(ssh), bigFile, `root@127.0.0.1:${copy}`],
      COMMAND_TIMEOUT_MS,
    );
    const kills: KillRecord[] = [];
    for (const fraction of [0.1, 0.3, 0.5, 0.7]) {
      await waitUntil(() => command.finished || sizeOf(copy) >= fraction * BIG_FILE_BYTES, COMMAND_TIMEOUT_MS);
      if (command.finished) break;
      kills.push(await killLinkAndWait(h, p, command));
    }
    const result = await command.result;

    expect(result.code, describeResult('scp', result)).toBe(0);
    expect(sizeOf(copy)).toBe(BIG_FILE_BYTES);
    expect(sha256(readFileSync(copy)), 'SHA-256 of the copy on the server host').toBe(bigFileHash);
    expectRealKills(kills, p, 3);
  }, 90_000);

  it('iperf3: a 10 s run finishes cleanly undisturbed and with a link kill every second', async () => {
    const h = hosts!;
    h.spawn(h.server, ['iperf3', '-s', '-B', '127.0.0.1', '-p', String(IPERF_PORT)]);
    await waitForPort(h, h.server, IPERF_PORT);
    const p = (pair = await startPair(h, IPERF_PORT));
    const client = ['iperf3', '-c', '127.0.0.1', '-p', String(USER_PORT), '-t', '10', '-J'];

    const calmResult = await new HostCommand(h, h.client, client, COMMAND_TIMEOUT_MS).result;
    expect(calmResult.code, describeResult('iperf3 (undisturbed)', calmResult)).toBe(0);
    const calm = parseIperf(calmResult);

    const linkDownsBefore = p.cproxy?.countLogs(isLinkDown) ?? 0;
    const logsBefore = p.cproxy?.logs.length ?? 0;
    const disturbed = new HostCommand(h, h.client, client, COMMAND_TIMEOUT_MS);
    const kills: number[] = [];
    for (;;) {
      await Promise.race([sleep(1000), disturbed.result.catch(() => undefined)]);
      if (disturbed.finished) break;
      kills.push(h.killLink(LINK_PORT));
    }
    const disturbedResult = await disturbed.result;
    expect(disturbedResult.code, describeResult('iperf3 (link killed every second)', disturbedResult)).toBe(0);
    const shaken = parseIperf(disturbedResult);
    const effective = kills.filter((killed) => killed > 0).length;

    console.log(
      `iperf3 through the tunnel: ${mbits(calm)} Mbit/s undisturbed, ${mbits(shaken)} Mbit/s with a link kill every second (${effective} kills)`,
    );
    expect(effective, `kills per second: ${JSON.stringify(kills)}`).toBeGreaterThanOrEqual(8);
    const linkDowns = (p.cproxy?.countLogs(isLinkDown) ?? 0) - linkDownsBefore;
    expect(linkDowns, "cproxy's 'link down' lines during the disturbed run").toBeGreaterThanOrEqual(effective);
    // Both of iperf3's connections (control and data) were cproxy sessions, resumed across the kills.
    const resumedSessions = (p.cproxy?.logs.slice(logsBefore) ?? [])
      .filter((line) => line.msg === 'link up: sessions resumed')
      .map((line) => line['sessions']);
    expect(resumedSessions.length, `resumes: ${JSON.stringify(resumedSessions)}`).toBeGreaterThanOrEqual(effective);
    expect(Math.max(0, ...resumedSessions.filter((n): n is number => typeof n === 'number'))).toBeGreaterThanOrEqual(2);
  }, 90_000);
});
