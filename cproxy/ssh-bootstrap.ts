import { execFile, spawn } from 'node:child_process';
import type { Buffer } from 'node:buffer';
import { decodeBootstrapLine, formatPortRange, type BootstrapAnnouncement } from '../common/ops/bootstrap-line.js';
import { StartupError } from '../common/ops/cli-options.js';
import { ConfigError } from '../common/support/errors.js';
import type { HostPort } from '../common/transport/address.js';
import type { Logger } from '../common/support/logger.js';
import type { CproxyOptions, SshBootstrap } from './cli.js';
import { remoteSproxyCommand, sshArguments, sshConfigArguments } from './ssh-command.js';

/** What the bootstrap gave: where to link, and with which secret. */
export interface Bootstrapped {
  server: HostPort;
  secret: Buffer;
  /** The remote sproxy's log file, on the remote host. */
  remoteLogFile: string;
}

/** How long ssh may stay after the announcement: the remote half exits right after printing it. */
const SSH_EXIT_GRACE_MS = 10_000;
/** The shell's status for a command it did not find. */
const COMMAND_NOT_FOUND = 127;
/** ssh's own status when it failed (connection, authentication), as opposed to the remote command's. */
const SSH_FAILED = 255;

/**
 * Starts sproxy on the remote host through the system's ssh (`sproxy --bootstrap`, bootstrap.ts
 * on that side) and reads back its port and secret from ssh's stdout. ssh's stdin is /dev/null:
 * its prompts (passwords, passphrases, two-factor codes) go to the terminal, as they always do.
 * Throws StartupError with one line saying what failed: ssh, a missing sproxy, the remote sproxy.
 */
export async function bootstrapOverSsh(options: CproxyOptions, ssh: SshBootstrap, logger: Logger): Promise<Bootstrapped> {
  const host = await sshHostName(ssh);
  const remoteCommand = remoteSproxyCommand(options, ssh);
  logger.info({ destination: ssh.destination, host, remoteCommand }, 'starting sproxy through ssh');
  const { announcement, code, stderr } = await runSsh(ssh, remoteCommand, logger);
  if (announcement === null) throw new StartupError(failureReason(ssh, code, stderr));
  // Warnings of ssh's own (a host key just added, a deprecated option) are worth keeping.
  if (stderr.trim() !== '') logger.info({ stderr: stderr.trim().slice(-2000) }, 'ssh said');
  return { server: { host, port: announcement.port }, secret: announcement.secret, remoteLogFile: announcement.logFile };
}

/** The one-line reason for a bootstrap that gave no announcement. */
export function failureReason(ssh: SshBootstrap, code: number | null, stderr: string): string {
  const said = lastLine(stderr);
  const saying = said === '' ? '' : `: ${said}`;
  if (code === SSH_FAILED) return `ssh to ${ssh.destination} failed (status ${code})${saying}`;
  const remote = `"${ssh.remoteCommand}"`;
  if (code === COMMAND_NOT_FOUND || /command not found|No such file or directory/.test(said)) {
    return `sproxy is not installed on ${ssh.destination}: the remote command ${remote} was not found (status ${code})${saying}; install it there with "npm install -g eternal-tcp", or give --remote-command`;
  }
  if (code === 0) return `the remote command ${remote} on ${ssh.destination} printed no bootstrap line: is it eternal-tcp's sproxy, of a version with --bootstrap?`;
  return `the remote sproxy on ${ssh.destination} failed (status ${code ?? 'killed'})${saying}`;
}

function lastLine(text: string): string {
  const lines = text.split(/\r?\n/).map((line) => line.trim()).filter((line) => line !== '');
  return lines.at(-1) ?? '';
}

interface SshOutcome {
  announcement: BootstrapAnnouncement | null;
  code: number | null;
  stderr: string;
}

/** Runs ssh with the remote command until it exits (killed SSH_EXIT_GRACE_MS after the announcement). */
function runSsh(ssh: SshBootstrap, remoteCommand: string, logger: Logger): Promise<SshOutcome> {
  return new Promise((resolve, reject) => {
    const child = spawn('ssh', sshArguments(ssh, remoteCommand), { stdio: ['ignore', 'pipe', 'pipe'] });
    let announcement: BootstrapAnnouncement | null = null;
    let badLine: string | null = null;
    let stdout = '';
    let stderr = '';
    let grace: NodeJS.Timeout | undefined;
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      for (let end = stdout.indexOf('\n'); end >= 0; end = stdout.indexOf('\n')) {
        const line = stdout.slice(0, end);
        stdout = stdout.slice(end + 1);
        try {
          const decoded = decodeBootstrapLine(line);
          if (decoded === null) continue;
          announcement ??= decoded;
          grace ??= setTimeout(() => {
            logger.warn({ graceMs: SSH_EXIT_GRACE_MS }, 'ssh did not exit after sproxy started: stopping it');
            child.kill('SIGTERM');
          }, SSH_EXIT_GRACE_MS);
        } catch (error) {
          badLine = (error as ConfigError).message;
        }
      }
      // A remote command that floods stdout without a line end is not sproxy.
      if (stdout.length > 64 * 1024) stdout = '';
    });
    // Kept short: only the end of it is ever shown.
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-16 * 1024)));
    child.on('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(grace);
      reject(new StartupError(error.code === 'ENOENT' ? 'cannot run ssh: it is not on PATH' : `cannot run ssh: ${error.message}`));
    });
    child.on('close', (code) => {
      clearTimeout(grace);
      if (announcement === null && badLine !== null) reject(new StartupError(badLine));
      else resolve({ announcement, code, stderr });
    });
  });
}

/**
 * The host name ssh would connect to for the destination, from `ssh -G` (a Host alias of
 * ~/.ssh/config names its HostName there): the link goes to the same machine. Falls back to the
 * destination's host part when ssh cannot say.
 */
function sshHostName(ssh: SshBootstrap): Promise<string> {
  const fallback = ssh.destination.slice(ssh.destination.lastIndexOf('@') + 1).replace(/^\[(.*)\]$/, '$1');
  return new Promise((resolve) => {
    execFile('ssh', sshConfigArguments(ssh), { timeout: 10_000, encoding: 'utf8' }, (error, stdout) => {
      const hostname = error === null ? /^hostname\s+(\S+)\s*$/m.exec(stdout)?.[1] : undefined;
      resolve(hostname ?? fallback);
    });
  });
}

/** The reason cproxy gives when the first link to a bootstrapped sproxy does not come. */
export function unreachableReason(server: HostPort, ssh: SshBootstrap, waitedMs: number, lastError: string | null): string {
  const why = lastError === null ? 'nothing answered' : `last error: ${lastError}`;
  return (
    `sproxy started on ${ssh.destination}, but its port ${server.port} on ${server.host} could not be reached within ${waitedMs} ms (${why}): ` +
    `is TCP port ${server.port} (--port-range ${formatPortRange(ssh.portRange)}) open in a firewall between here and there?`
  );
}
