import { homedir } from 'node:os';
import { join } from 'node:path';
import type { HostPort } from '../common/transport/address.js';

/**
 * Where a bootstrap sproxy logs when not told: the user's state directory (XDG), as a daemon that
 * outlives the ssh session which started it has no terminal to write to.
 */
export function defaultBootstrapLogFile(env: NodeJS.ProcessEnv = process.env): string {
  const stateHome = env['XDG_STATE_HOME'] !== undefined && env['XDG_STATE_HOME'] !== '' ? env['XDG_STATE_HOME'] : join(homedir(), '.local', 'state');
  return join(stateHome, 'eternal-tcp', 'sproxy-bootstrap.log');
}

/**
 * The sshd that started this process, from SSH_CONNECTION ("client_ip client_port server_ip
 * server_port"): the address and port the client reached it on, which is where a bootstrap
 * sproxy's default forward goes (cproxy --ssh with no forward: a roaming ssh). Null outside ssh.
 */
export function sshServerAddress(env: NodeJS.ProcessEnv): HostPort | null {
  const fields = (env['SSH_CONNECTION'] ?? '').trim().split(/\s+/);
  if (fields.length !== 4) return null;
  const [, , host, portText] = fields as [string, string, string, string];
  const port = Number(portText);
  if (host === '' || !Number.isInteger(port) || port < 1 || port > 65535) return null;
  return { host, port };
}
