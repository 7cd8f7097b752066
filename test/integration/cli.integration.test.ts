import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { useCleanup } from '../helpers/cleanup.js';
import { startTunnel } from '../helpers/tunnel.js';
import { REPO_ROOT } from '../helpers/proxies.js';
import { canRestartInPlace } from '../../common/ops/heap-floor.js';
import { echoTransfer, startEchoTarget, waitClosed } from '../helpers/targets.js';

const defer = useCleanup();
const run = promisify(execFile);

async function runBin(name: 'cproxy' | 'sproxy', args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [join(REPO_ROOT, 'bin', `${name}.js`), ...args]);
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

describe('the executables', () => {
  it.each([
    ['cproxy', ['--bogus']],
    ['cproxy', ['--dead-after', 'x']],
    ['sproxy', ['--target', 'nowhere']],
    ['sproxy', ['--listen']],
  ] as const)('%s %j exits 2 with a one-line reason', async (name, args) => {
    const result = await runBin(name, [...args]);
    expect(result.code).toBe(2);
    const lines = result.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^${name}: .+ \\(see ${name} --help\\)$`));
  });

  it('print --help and --version', async () => {
    const version = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    for (const name of ['cproxy', 'sproxy'] as const) {
      const help = await runBin(name, ['--help']);
      expect(help.code).toBe(0);
      expect(help.stdout).toContain(`Usage: ${name}`);
      expect(help.stdout).toContain('--resume-window');
      expect((await runBin(name, ['--version'])).stdout.trim()).toBe(version);
    }
  });

  it('cannot listen on a port in use: exits 1 and says why', async () => {
    const target = await startEchoTarget();
    defer(() => target.close());
    const result = await runBin('sproxy', ['--listen', `127.0.0.1:${target.port}`]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^sproxy: cannot listen: .*EADDRINUSE/m); // after the runtime line where it is at info (Node 20)
  });

  it(`log the runtime at startup: Node ${process.version}, and accepted sockets read directly`, async () => {
    const { sproxy, cproxy } = await startTunnel(defer);
    for (const proc of [sproxy.proc, cproxy.proc]) {
      const runtime = await proc.waitForLog((l) => l.msg.startsWith('runtime'));
      // Debug level when nothing is slower than it could be; info where the heap floor is missing (Node 20).
      const heapFloor = canRestartInPlace();
      expect(runtime).toMatchObject({ level: heapFloor ? 20 : 30, node: process.version, openssl: process.versions.openssl, acceptedReads: 'direct', heapFloor });
    }
  });

  it('SIGTERM: both stop listening, close their sessions and exit 0 within a few seconds', async () => {
    const { sproxy, cproxy, connect } = await startTunnel(defer);
    const user = await connect();
    await echoTransfer(user.socket, 10_000);

    const startedAt = Date.now();
    cproxy.proc.signal('SIGTERM');
    expect(await cproxy.proc.exited).toEqual({ code: 0, signal: null });
    await waitClosed(user);
    sproxy.proc.signal('SIGTERM');
    expect(await sproxy.proc.exited).toEqual({ code: 0, signal: null });
    expect(Date.now() - startedAt).toBeLessThan(5000);
    expect(cproxy.proc.logs.some((l) => l.msg === 'cproxy shutting down')).toBe(true);
    // cproxy's GOAWAY made sproxy drop the client's sessions, closing the target connection.
    await sproxy.proc.waitForLog((l) => l.msg === 'session closed' && String(l['detail']).startsWith('client closed'));
  });
});
