import { formatHost, formatHostPort } from '../common/transport/address.js';
import { formatPortRange } from '../common/ops/bootstrap-line.js';
import { shellQuote } from '../common/support/shell-quote.js';
import type { CproxyOptions, SshBootstrap } from './cli.js';

/**
 * ssh's arguments to start the bootstrap sproxy: no terminal (-T: the announcement must come
 * through unaltered, and nothing is typed at the remote side), the user's options, then the
 * destination and the remote command, which ssh hands to the remote user's shell as one string.
 */
export function sshArguments(ssh: SshBootstrap, remoteCommand: string): string[] {
  return ['-T', ...ssh.sshOptions.flatMap((option) => ['-o', option]), '--', ssh.destination, remoteCommand];
}

/** `ssh -G`'s arguments: the configuration ssh would use for the destination, to learn its real host name. */
export function sshConfigArguments(ssh: SshBootstrap): string[] {
  return ['-G', ...ssh.sshOptions.flatMap((option) => ['-o', option]), '--', ssh.destination];
}

/**
 * The remote shell's command line: --remote-command as given (it may be several words: `npx -p
 * eternal-tcp sproxy`), then sproxy's flags, each quoted for a POSIX shell. The flags carry what
 * both ends must agree on (heartbeat, dead-link timeout, resume window) and the policy that lets
 * exactly this cproxy's forwards through: each -L's target, each -R's listener, --ports' ports,
 * and with -D any destination (what ssh -D lets an ssh user reach).
 */
export function remoteSproxyCommand(options: CproxyOptions, ssh: SshBootstrap): string {
  const flags: string[] = [
    '--bootstrap',
    `--port-range=${formatPortRange(ssh.portRange)}`,
    `--heartbeat-interval=${options.heartbeatIntervalMs}`,
    `--dead-after=${options.deadAfterMs}`,
    `--resume-window=${Math.round(options.resumeWindowMs / 1000)}`,
    `--log-level=${options.logLevel === 'silent' ? 'error' : options.logLevel}`,
  ];
  const ports: number[] = [];
  for (const { target } of options.forwards) {
    if (target === null) continue;
    if (target.host === '') ports.push(target.port);
    else flags.push(`--allow=${formatHostPort(target)}`);
  }
  if (ports.length > 0) flags.push(`--ports=${ports.join(',')}`);
  if (options.dynamicForwards.length > 0) flags.push('--allow=*:*');
  // A -R on port 0 takes whatever port sproxy's system gives, which only a rule for every port allows.
  for (const { listen } of options.remoteForwards) {
    flags.push(`--allow-listen=${formatHost(listen.host)}:${listen.port === 0 ? '*' : listen.port}`);
  }
  return [ssh.remoteCommand, ...flags.map(shellQuote)].join(' ');
}
