import { describe, expect, it } from 'vitest';
import { shellWords } from '../helpers/shell-words.js';
import { parseCproxyArgs } from '../../cproxy/cli.js';
import { remoteSproxyCommand, sshArguments, sshConfigArguments } from '../../cproxy/ssh-command.js';
import { failureReason } from '../../cproxy/ssh-bootstrap.js';

function sshOf(args: string[]) {
  const options = parseCproxyArgs(args);
  if (options.ssh === null) throw new Error('no --ssh');
  return { options, ssh: options.ssh };
}


describe("cproxy --ssh's command lines", () => {
  it("gives ssh no terminal, the user's options and the destination after --", () => {
    const { ssh } = sshOf(['--ssh', 'me@vps', '--ssh-option', 'Port=2222', '--ssh-option', 'IdentityFile=/k']);
    expect(sshArguments(ssh, 'CMD')).toEqual(['-T', '-o', 'Port=2222', '-o', 'IdentityFile=/k', '--', 'me@vps', 'CMD']);
    expect(sshConfigArguments(ssh)).toEqual(['-G', '-o', 'Port=2222', '-o', 'IdentityFile=/k', '--', 'me@vps']);
  });

  it('asks the remote sproxy for exactly what the forwards need, and the timings both ends share', () => {
    const { options, ssh } = sshOf([
      '--ssh', 'vps', '--remote-command', 'npx -y -p eternal-tcp sproxy', '--port-range', '4000-4010',
      '-L', '5201:db.internal:5432', '-L', '5202:[::1]:22', '--ports', '8000,8001', '-D', '1080', '-R', '9000:localhost:80', '-R', '0:localhost:81',
      '--resume-window', '600', '--dead-after', '5000',
    ]);
    const command = remoteSproxyCommand(options, ssh);
    expect(command.startsWith('npx -y -p eternal-tcp sproxy ')).toBe(true);
    const words = shellWords(command.slice('npx -y -p eternal-tcp sproxy '.length));
    expect(words).toEqual([
      '--bootstrap', '--port-range=4000-4010', '--heartbeat-interval=1000', '--dead-after=5000', '--resume-window=600', '--log-level=info',
      '--allow=db.internal:5432', '--allow=[::1]:22', '--ports=8000,8001', '--allow=*:*', '--allow-listen=127.0.0.1:9000', '--allow-listen=127.0.0.1:*',
    ]);
    // No forward: the one of --listen, to the remote's own default (the sshd that started it).
    const plain = sshOf(['--ssh', 'vps']);
    expect(shellWords(remoteSproxyCommand(plain.options, plain.ssh).slice('sproxy '.length))).not.toContain('--allow');
  });

  it('tells why the bootstrap failed, from the status and the last line ssh printed', () => {
    const { ssh } = sshOf(['--ssh', 'me@vps']);
    expect(failureReason(ssh, 255, 'banner\nme@vps: Permission denied (publickey).\n')).toBe('ssh to me@vps failed (status 255): me@vps: Permission denied (publickey).');
    expect(failureReason(ssh, 127, 'bash: line 1: sproxy: command not found\n')).toMatch(/^sproxy is not installed on me@vps: .*npm install -g eternal-tcp.*--remote-command$/);
    expect(failureReason(ssh, 1, 'sproxy: no free port in 2022-2122\n')).toBe('the remote sproxy on me@vps failed (status 1): sproxy: no free port in 2022-2122');
    expect(failureReason(ssh, 0, '')).toMatch(/printed no bootstrap line/);
  });
});
