import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { useCleanup } from '../helpers/cleanup.js';
import { isLinkUp, REPO_ROOT, startCproxy, startSproxy } from '../helpers/proxies.js';
import { secretFile } from '../helpers/secrets.js';
import { connectUser, echoTransfer, startEchoTarget } from '../helpers/targets.js';

const defer = useCleanup();
const run = promisify(execFile);

/** `npm pack` runs the build (the prepare script); the install may fetch the dependencies. */
const SETUP_TIMEOUT_MS = 180_000;

/** The tarball and the install, removed after the tests. */
let dir = '';
/** Where `npm install -g --prefix` put the package: its programs are in `${prefix}/bin`. */
let prefix = '';
/** The tarball's file paths, without npm's leading `package/`. */
let packed: string[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'etcp-package-'));
  // npm and tsc are not ours to cover: under c8 their coverage files would only slow its report.
  const { NODE_V8_COVERAGE: _coverage, ...env } = process.env;
  const options = { timeout: SETUP_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024, env };
  await run('npm', ['pack', '--pack-destination', dir, '--loglevel=error'], { ...options, cwd: REPO_ROOT });
  const tarball = join(dir, readdirSync(dir).find((name) => name.endsWith('.tgz')) ?? 'no tarball');
  const listing = await run('tar', ['-tzf', tarball], options);
  packed = listing.stdout.split('\n').filter((line) => line !== '').map((line) => line.replace(/^package\//, ''));
  prefix = join(dir, 'prefix');
  // --prefer-offline: the dependencies come from npm's cache where `npm ci` left them, otherwise
  // from the registry. From a directory of its own, so no project .npmrc applies.
  await run(
    'npm',
    ['install', '--global', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', tarball],
    { ...options, cwd: dir },
  );
  // As after a user's `npm install -g`: the programs on PATH, found by name; and the node running
  // these tests first, for their `#!/usr/bin/env node` (CI runs each Node major this way).
  vi.stubEnv('PATH', [join(prefix, 'bin'), dirname(process.execPath), process.env['PATH']].join(delimiter));
}, SETUP_TIMEOUT_MS);

afterAll(() => {
  vi.unstubAllEnvs();
  if (dir !== '') rmSync(dir, { recursive: true, force: true });
});

describe('npm install -g of the packed package', () => {
  it('packs the programs and what they run, without tests, benchmarks or sources', () => {
    for (const file of ['bin/cproxy.js', 'bin/sproxy.js', 'dist/cproxy/main.js', 'dist/sproxy/main.js', 'dist/common/index.js', 'dist/common/index.d.ts', 'deploy/systemd/sproxy.service', 'README.md', 'package.json']) {
      expect(packed).toContain(file);
    }
    const unwanted = packed.filter((file) => /^(test|bench|netlab|demo|\.ci|dist\/demo|dist\/netlab|dist-bench)\//.test(file) || /(?<!\.d)\.ts$/.test(file));
    expect(unwanted).toEqual([]);
  });

  it('puts cproxy and sproxy on PATH: --version and --help', async () => {
    const version = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    expect((await run('cproxy', ['--version'])).stdout.trim()).toBe(version);
    expect((await run('sproxy', ['--help'])).stdout).toContain('Usage: sproxy');
  });

  it('the installed sproxy and cproxy carry bytes to a target and back', async () => {
    const { file } = secretFile(defer);
    const target = await startEchoTarget();
    defer(() => target.close());
    const sproxy = await startSproxy(target.port, ['--secret-file', file], '127.0.0.1:0', [], join(prefix, 'bin', 'sproxy'));
    defer(() => sproxy.proc.stop());
    const cproxy = await startCproxy(sproxy.port, ['--secret-file', file], '127.0.0.1:0', [], join(prefix, 'bin', 'cproxy'));
    defer(() => cproxy.proc.stop());
    await cproxy.proc.waitForLog(isLinkUp);
    const user = await connectUser(cproxy.port);
    defer(() => user.socket.destroy());
    const transfer = await echoTransfer(user.socket, 1024 * 1024);
    expect(transfer.receivedHash).toBe(transfer.sentHash);
  });
});
