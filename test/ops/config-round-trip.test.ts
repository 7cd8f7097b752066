import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseCproxyArgs } from '../../cproxy/cli.js';
import { parseSproxyArgs } from '../../sproxy/cli.js';
import { REPO_ROOT } from '../helpers/proxies.js';

/**
 * Every flag of each proxy set in a config file gives the options the same flag gives on the
 * command line. The flags are read from the built program's --help, so a flag added without a
 * line here fails the test.
 */

const dir = mkdtempSync(join(tmpdir(), 'etcp-config-rt-'));
const secretFile = join(dir, 'secret');
writeFileSync(secretFile, 'a'.repeat(32), { mode: 0o600 });

/** A value of each flag's, other than its default: the same words on the command line and in the file. */
const LINK_SETTINGS = {
  'heartbeat-interval': '500',
  'dead-after': '2000',
  'resume-window': '600',
  window: '1024',
  'max-window': '4096',
  'send-budget': '64',
};

const CPROXY_SETTINGS: Record<string, string | string[] | boolean> = {
  'secret-file': secretFile,
  listen: '127.0.0.1:5300',
  server: 'vps.example.net:6300',
  target: 'db:5432',
  'local-forward': ['5301:localhost:23', '[::1]:5302:localhost:22'],
  'dynamic-forward': ['1080', '[::1]:1081'],
  'remote-forward': ['8022:localhost:22', '*:8080:[::1]:80'],
  ports: '40000,40001',
  'connect-timeout': '1500',
  'connect-stagger': '300',
  'address-poll': '0',
  'express-lane': false,
  metrics: '9100',
  ...LINK_SETTINGS,
  'log-level': 'debug',
  'log-format': 'json',
};

/** The flags of `cproxy --ssh`, which replaces --server and --secret-file. */
const CPROXY_SSH_SETTINGS: Record<string, string | string[] | boolean> = {
  ...Object.fromEntries(Object.entries(CPROXY_SETTINGS).filter(([flag]) => flag !== 'server' && flag !== 'secret-file')),
  ssh: 'me@vps.example.net',
  'ssh-option': ['Port=2222', 'IdentityFile=/keys/work'],
  'remote-command': 'npx -y -p eternal-tcp sproxy',
  'port-range': '4000-4100',
};

const SPROXY_SETTINGS: Record<string, string | string[] | boolean> = {
  'secret-file': secretFile,
  listen: '0.0.0.0:6300',
  target: '127.0.0.1:2323',
  allow: ['127.0.0.1:22', 'db.internal:5432'],
  'allow-listen': ['127.0.0.1:8000-8099', '*:2222'],
  ports: '40000,40001',
  insecure: true,
  'max-unauthenticated': '64',
  'max-clients': '10',
  'max-sessions-per-client': '20',
  'proxy-protocol': true,
  metrics: '[::1]:0',
  ...LINK_SETTINGS,
  'log-level': 'warn',
  'log-format': 'pretty',
};

/** The flags of `sproxy --bootstrap`, which makes its secret and takes its port from a range. */
const SPROXY_BOOTSTRAP_SETTINGS: Record<string, string | string[] | boolean> = {
  ...Object.fromEntries(Object.entries(SPROXY_SETTINGS).filter(([flag]) => flag !== 'listen' && flag !== 'secret-file')),
  bootstrap: true,
  'port-range': '4000-4100',
  'secret-stdin': true,
  'log-file': '/var/log/sproxy-bootstrap.log',
};

/** The long flags the program's --help lists (help, version and config aside). */
function flagsOf(program: 'cproxy' | 'sproxy'): string[] {
  const help = spawnSync(process.execPath, [join(REPO_ROOT, 'bin', `${program}.js`), '--help'], { encoding: 'utf8' }).stdout;
  const flags = [...help.matchAll(/^ {2,8}(?:-\w, )?--([a-z][a-z-]*)/gm)].map((match) => match[1] as string);
  return [...new Set(flags)].filter((flag) => !['help', 'version', 'config'].includes(flag)).sort();
}

function asWords(settings: Record<string, string | string[] | boolean>): string[] {
  return Object.entries(settings).flatMap(([flag, value]) =>
    value === true ? [`--${flag}`] : value === false ? [`--no-${flag}`] : (Array.isArray(value) ? value : [value]).flatMap((v) => [`--${flag}`, v]),
  );
}

function asYaml(settings: Record<string, string | string[] | boolean>): string {
  const quote = (text: string): string => JSON.stringify(text);
  return Object.entries(settings)
    .map(([flag, value]) => (Array.isArray(value) ? `${flag}:\n${value.map((v) => `  - ${quote(v)}`).join('\n')}` : `${flag}: ${typeof value === 'boolean' ? String(value) : quote(value)}`))
    .join('\n');
}

describe('config files: every flag round-trips', () => {
  // Each program's flags in the modes that exclude one another; together they hold every flag.
  it.each([
    ['cproxy', [CPROXY_SETTINGS, CPROXY_SSH_SETTINGS], parseCproxyArgs],
    ['sproxy', [SPROXY_SETTINGS, SPROXY_BOOTSTRAP_SETTINGS], parseSproxyArgs],
  ] as const)('%s: each flag in the file gives what the flag gives', (program, modes, parse) => {
    expect([...new Set(modes.flatMap((settings) => Object.keys(settings)))].sort()).toEqual(flagsOf(program));
    for (const [index, settings] of modes.entries()) {
      const file = join(dir, `${program}-${index}.yaml`);
      writeFileSync(file, asYaml(settings));
      const fromFlags = parse(asWords(settings));
      expect(parse(['--config', file])).toEqual(fromFlags);
      // A flag given on the command line overrides the file's.
      expect(parse(['--config', file, '--window', '2048']).windowBytes).toBe(2048 * 1024);
    }
  });

  it('a bad file exits 2 with its line named', () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'server: vps:6200\nwindow: lots\n');
    const run = spawnSync(process.execPath, [join(REPO_ROOT, 'bin', 'cproxy.js'), '--config', file], { encoding: 'utf8' });
    expect(run.status).toBe(2);
    expect(run.stderr.trim()).toMatch(new RegExp(`^cproxy: ${file}:2: --window must be a whole number from \\d+ to \\d+, got "lots" \\(see cproxy --help\\)$`));
    writeFileSync(file, 'listen: 0.0.0.0:6200\nlisten-port: 1\n');
    const unknown = spawnSync(process.execPath, [join(REPO_ROOT, 'bin', 'sproxy.js'), '--config', file, '--insecure'], { encoding: 'utf8' });
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain(`${file}:2: `);
    expect(unknown.stderr).toContain('listen-port');
  });
});
