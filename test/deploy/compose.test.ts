import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { parseCproxyArgs } from '../../cproxy/cli.js';
import { parseSproxyArgs } from '../../sproxy/cli.js';
import { REPO_ROOT } from '../helpers/proxies.js';

const composeFile = join(REPO_ROOT, 'docker-compose.yml');

/** The `command: [...]` of each service; the file writes them as JSON-compatible flow sequences. */
function serviceCommands(): Map<string, string[]> {
  const commands = new Map<string, string[]>();
  let service: string | null = null;
  for (const line of readFileSync(composeFile, 'utf8').split('\n')) {
    const header = /^ {2}([a-z-]+):\s*$/.exec(line);
    if (header !== null) service = header[1] as string;
    const command = /^ {4}command: (\[.*\])\s*$/.exec(line);
    if (command !== null && service !== null) commands.set(service, JSON.parse(command[1] as string) as string[]);
  }
  return commands;
}

afterEach(() => {
  vi.unstubAllEnvs();
});

describe('docker-compose.yml (validated here; no Docker engine runs on our machines)', () => {
  it('is a valid compose file', () => {
    // Throws, failing the test, if docker-compose rejects the file.
    execFileSync('docker-compose', ['-f', composeFile, 'config', '-q'], { stdio: 'pipe' });
  });

  it('runs cproxy and sproxy with flags they accept, wired to each other and to the telnetd', () => {
    // Both get the link's secret from the environment, as the file passes it through.
    vi.stubEnv('ETERNAL_TCP_SECRET', 'a test secret of enough length');
    const commands = serviceCommands();
    const cproxy = commands.get('cproxy');
    const sproxy = commands.get('sproxy');
    expect(cproxy?.[0]).toBe('cproxy');
    expect(sproxy?.[0]).toBe('sproxy');
    const cproxyOptions = parseCproxyArgs(cproxy!.slice(1));
    const sproxyOptions = parseSproxyArgs(sproxy!.slice(1));
    expect(cproxyOptions.server).toEqual({ host: 'sproxy', port: sproxyOptions.listen.port });
    expect(sproxyOptions.target).toEqual({ host: 'telnetd', port: 23 });
    expect(commands.get('telnetd')?.join(' ')).toContain('/usr/sbin/telnetd -h -E /bin/sh');
    expect(sproxyOptions.secret?.toString()).toBe('a test secret of enough length');
    expect(readFileSync(composeFile, 'utf8').match(/environment: \[ETERNAL_TCP_SECRET\]/g)).toHaveLength(2);
  });
});
