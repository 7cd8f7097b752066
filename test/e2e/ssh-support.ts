import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sshdConfig } from '../../bench/peers/sshd-config.js';
import { LINK_PORT, type ProxyPair } from './pair.js';
import type { TwoHosts } from './topology.js';

/** What a bounded command on a test host did. */
export interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** True when the command outlived its time limit and was killed. */
  timedOut: boolean;
  ms: number;
}

/** A command running on a test host; killed (SIGKILL) after `timeoutMs` so a broken tunnel fails instead of hanging. */
export class HostCommand {
  stdout = '';
  stderr = '';
  readonly result: Promise<CommandResult>;
  #finished = false;
  readonly #child: ChildProcess;

  constructor(hosts: TwoHosts, ns: string, command: string[], timeoutMs: number) {
    const started = Date.now();
    this.#child = hosts.spawn(ns, command);
    this.#child.stdin?.end();
    this.#child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (this.stdout += chunk));
    this.#child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (this.stderr += chunk));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      this.#child.kill('SIGKILL');
    }, timeoutMs);
    this.result = new Promise((resolve, reject) => {
      this.#child.on('error', (error) => {
        clearTimeout(timer);
        this.#finished = true;
        reject(error);
      });
      // 'close', not 'exit': stdout and stderr are complete by then.
      this.#child.on('close', (code: number | null, signal: NodeJS.Signals | null) => {
        clearTimeout(timer);
        this.#finished = true;
        resolve({ code, signal, stdout: this.stdout, stderr: this.stderr, timedOut, ms: Date.now() - started });
      });
    });
  }

  get finished(): boolean {
    return this.#finished;
  }
}

export function describeResult(name: string, result: CommandResult): string {
  const how = result.timedOut ? 'timed out' : `exited with code ${result.code}${result.signal === null ? '' : ` (${result.signal})`}`;
  return `${name} ${how} after ${result.ms} ms; stderr:\n${result.stderr.slice(-2000)}\nstdout tail:\n${result.stdout.slice(-500)}`;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `condition` every 20 ms until it holds (true) or `timeoutMs` passes (false). */
export async function waitUntil(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) return false;
    await sleep(20);
  }
  return true;
}

export interface KillRecord {
  /** What killLink returned: established link connections destroyed. */
  killed: number;
  /** Whether cproxy logged 'link up: sessions resumed' afterwards (always false in plain-relay mode). */
  resumed: boolean;
  /** Whether the command under test was still running when the kill happened. */
  duringCommand: boolean;
}

/**
 * Kills the link once (ss -K on the server host) and waits until it is back: cproxy's
 * 'link up: sessions resumed' log, or `plainWaitMs` without a cproxy (plain-relay mode).
 */
export async function killLinkAndWait(hosts: TwoHosts, pair: ProxyPair, command: HostCommand, plainWaitMs = 1000): Promise<KillRecord> {
  const cproxy = pair.cproxy;
  if (cproxy === undefined) {
    const duringCommand = !command.finished;
    const killed = hosts.killLink(LINK_PORT);
    await sleep(plainWaitMs);
    return { killed, resumed: false, duringCommand };
  }
  const resumed = cproxy
    .waitForNextLog((line) => line.msg === 'link up: sessions resumed', 10_000, "'link up: sessions resumed'")
    .then(() => true);
  const duringCommand = !command.finished;
  const killed = hosts.killLink(LINK_PORT);
  if (killed === 0) {
    // Nothing to kill: no resume is coming. Swallow the pending waiter's eventual rejection.
    resumed.catch(() => undefined);
    return { killed, resumed: false, duringCommand };
  }
  return { killed, resumed: await resumed, duringCommand };
}

export interface SshFiles {
  dir: string;
  config: string;
  clientKey: string;
}

/**
 * Host key, client key pair, authorized_keys and an sshd_config in `dir`, for an sshd listening
 * on 127.0.0.1:22 of the server host (or `listenAddress`) and accepting root with that key only;
 * `extraLines` go at the end of its config.
 */
export function prepareSsh(dir: string, listenAddress = '127.0.0.1', extraLines: string[] = []): SshFiles {
  const hostKey = join(dir, 'ssh_host_ed25519_key');
  const clientKey = join(dir, 'id_ed25519');
  const authorizedKeys = join(dir, 'authorized_keys');
  const config = join(dir, 'sshd_config');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'etcp-e2e-host', '-f', hostKey], { stdio: 'ignore' });
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'etcp-e2e-client', '-f', clientKey], { stdio: 'ignore' });
  execFileSync('cp', [`${clientKey}.pub`, authorizedKeys]);
  writeFileSync(
    config,
    sshdConfig({ hostKey, listenAddress, port: 22, authorizedKeysFile: authorizedKeys, extraLines: ['Subsystem sftp internal-sftp', ...extraLines] }),
  );
  // sshd's privilege-separation directory; the namespaces share the file system.
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  return { dir, config, clientKey };
}

/** ssh/scp options: the test key, no known_hosts, no prompts, no user config. */
export function sshClientOptions(files: SshFiles): string[] {
  return [
    '-F', '/dev/null',
    '-i', files.clientKey,
    '-o', 'StrictHostKeyChecking=no',
    '-o', 'UserKnownHostsFile=/dev/null',
    '-o', 'BatchMode=yes',
    '-o', 'LogLevel=ERROR',
    '-o', 'ConnectTimeout=15',
  ];
}
