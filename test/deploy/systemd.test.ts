import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parseSproxyArgs } from '../../sproxy/cli.js';
import { useCleanup } from '../helpers/cleanup.js';
import { REPO_ROOT } from '../helpers/proxies.js';

const defer = useCleanup();
const run = promisify(execFile);

const UNIT_DIR = join(REPO_ROOT, 'deploy', 'systemd');
const UNIT_TEXT = readFileSync(join(UNIT_DIR, 'sproxy.service'), 'utf8');
/** Where the unit expects `npm install -g` to have put sproxy, and its settings. */
const INSTALLED_SPROXY = '/usr/local/bin/sproxy';
const INSTALLED_CONFIG = '/etc/eternal-tcp/sproxy.yaml';
/** Exposure as `systemd-analyze security` scores it, in tenths (13 = 1.3, "OK"; 100 = unhardened). */
const MAX_EXPOSURE_TENTHS = 20;

/**
 * The unit as written but starting this repository's bin/sproxy.js: `verify` checks that
 * ExecStart's program exists, and this machine need not have the package installed.
 */
function unitHere(text = UNIT_TEXT): string {
  return text.replace(`ExecStart=${INSTALLED_SPROXY} `, `ExecStart=${join(REPO_ROOT, 'bin', 'sproxy.js')} `);
}

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'etcp-systemd-'));
  defer(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Runs systemd-analyze on `text` saved as sproxy.service: its complaints about that unit, and its exit status. */
async function analyze(args: string[], text: string): Promise<{ status: number; complaints: string[] }> {
  const file = join(tempDir(), 'sproxy.service');
  writeFileSync(file, text);
  let status = 0;
  let stderr: string;
  try {
    ({ stderr } = await run('systemd-analyze', [...args, file]));
  } catch (error) {
    const failed = error as { code: number; stderr: string };
    status = failed.code;
    stderr = failed.stderr;
  }
  // An unknown key or a bad value is only a line on stderr (the exit status stays 0); lines about
  // other units (the targets it names, from this machine) are not the unit's fault.
  return { status, complaints: stderr.split('\n').filter((line) => line.includes('sproxy.service')) };
}

/** The value of a directive the unit sets once. */
function directive(name: string): string {
  const values = [...UNIT_TEXT.matchAll(new RegExp(`^${name}=(.*)$`, 'gm'))].map((match) => match[1] as string);
  expect(values, name).toHaveLength(1);
  return values[0] as string;
}

describe('deploy/systemd/sproxy.service', () => {
  it('passes systemd-analyze verify', async () => {
    expect(await analyze(['verify'], unitHere())).toEqual({ status: 0, complaints: [] });
  });

  it('would fail it with a misspelt directive or a bad value: the check can fail', async () => {
    const typo = await analyze(['verify'], unitHere().replace('\nRestart=on-failure', '\nRestrat=on-failure'));
    expect(typo.complaints).toEqual([expect.stringContaining(`Unknown key 'Restrat'`)]);
    const badValue = await analyze(['verify'], unitHere().replace('ProtectSystem=strict', 'ProtectSystem=strickt'));
    expect(badValue.complaints).toEqual([expect.stringContaining('strickt')]);
  });

  it(`is hardened: systemd-analyze security scores its exposure at most ${MAX_EXPOSURE_TENTHS / 10}, and would not without the hardening`, async () => {
    const security = ['security', '--offline=yes', `--threshold=${MAX_EXPOSURE_TENTHS}`];
    expect((await analyze(security, unitHere())).status).toBe(0);
    const unhardened = unitHere().replace(/^# Hardening:[^]*?(?=^\[Install\])/m, '').replace('DynamicUser=yes\n', '');
    expect((await analyze(security, unhardened)).status).not.toBe(0);
  });

  it('runs sproxy with flags it accepts: the example settings, and the secret from the credential systemd loads', () => {
    expect(directive('Restart')).toBe('on-failure');
    expect(directive('DynamicUser')).toBe('yes');
    const [credential, source] = directive('LoadCredential').split(':');
    expect(source).toBe('/etc/eternal-tcp/secret');
    // As systemd would start it: $CREDENTIALS_DIRECTORY holds a copy of the source file.
    const credentials = tempDir();
    writeFileSync(join(credentials, credential as string), 'a secret of enough length for sproxy\n', { mode: 0o400 });
    const words = directive('ExecStart').split(' ');
    expect(words[0]).toBe(INSTALLED_SPROXY);
    const args = words.slice(1).map((word) => (word === INSTALLED_CONFIG ? join(UNIT_DIR, 'sproxy.yaml') : word.replace('${CREDENTIALS_DIRECTORY}', credentials)));
    const options = parseSproxyArgs(args);
    expect(options.secret?.toString()).toBe('a secret of enough length for sproxy');
    expect(options.secretFileWarning).toBeNull();
    expect(options.listen).toEqual({ host: '0.0.0.0', port: 6200 });
    expect(options.target).toEqual({ host: '127.0.0.1', port: 22 });
  });
});
