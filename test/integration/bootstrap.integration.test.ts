import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeBootstrapLine, type BootstrapAnnouncement } from '../../common/ops/bootstrap-line.js';
import { REPO_ROOT, startCproxy, type ProxyProcess } from '../helpers/proxies.js';
import { connectUser, echoTransfer, startEchoTarget, type TargetServer } from '../helpers/targets.js';
import { sleep, waitUntil } from '../e2e/ssh-support.js';

/**
 * `sproxy --bootstrap` as ssh runs it (here without ssh: the same process, stdin and stdout): it
 * prints one line and exits, leaving a detached sproxy that serves one client and goes away when
 * that client does. cproxy --ssh over a real sshd is in test/e2e/ssh-bootstrap.e2e.test.ts.
 */

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Announced {
  announcement: BootstrapAnnouncement;
  /** The detached serving half's pid. */
  pid: number;
  logFile: string;
}

/**
 * Ports in a range of this size from a random base: one of them is free. The bases lie below
 * Linux's ephemeral range (32768 up), where the other tests' outgoing connections take ports.
 */
const RANGE_SIZE = 20;
const randomBase = (): number => 20_000 + Math.floor(Math.random() * 12_000);

/** Listens on `count` consecutive ports from a random base, trying other bases while one is taken. */
async function blockConsecutivePorts(count: number): Promise<{ base: number; blockers: Server[] }> {
  for (;;) {
    const base = randomBase();
    const blockers: Server[] = [];
    try {
      for (let port = base; port < base + count; port++) {
        const server = createServer();
        blockers.push(server);
        await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, '0.0.0.0', resolve));
      }
      return { base, blockers };
    } catch (error) {
      blockers.forEach((server) => server.listening && server.close());
      if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw error;
    }
  }
}
const portRangeFrom = (base: number): string => `${base}-${base + RANGE_SIZE - 1}`;

/** Runs the announcing half to its exit; returns what it printed and the serving half it left. */
async function announce(
  target: TargetServer,
  extra: string[] = [],
  stdin = '',
  range = portRangeFrom(randomBase()),
): Promise<{ code: number | null; stdout: string; stderr: string; logFile: string; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'etcp-bootstrap-'));
  const logFile = join(dir, 'state', 'sproxy.log');
  const child = spawn(
    process.execPath,
    [join(REPO_ROOT, 'bin', 'sproxy.js'), '--bootstrap', '--port-range', range, '--log-file', logFile, '--target', `127.0.0.1:${target.port}`, '--log-level', 'debug', ...extra],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  child.stdin.end(stdin);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  // 'close': stdout and stderr are complete, and no descriptor of theirs is held by the child's child.
  const [code] = (await once(child, 'close')) as [number | null];
  cleanups.push(() => {
    for (const pid of servingPids(logFile)) kill(pid, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  return { code, stdout, stderr, logFile, dir };
}

async function announced(target: TargetServer, extra: string[] = [], stdin = ''): Promise<Announced> {
  const run = await announce(target, extra, stdin);
  expect(run.code, run.stderr).toBe(0);
  const lines = run.stdout.split('\n').filter((line) => line !== '');
  expect(lines).toHaveLength(1);
  const announcement = decodeBootstrapLine(lines[0] as string);
  if (announcement === null) throw new Error(`no announcement in ${run.stdout}`);
  expect(announcement.logFile).toBe(run.logFile);
  const pids = servingPids(run.logFile);
  expect(pids, 'one detached sproxy left running').toHaveLength(1);
  return { announcement, pid: pids[0] as number, logFile: run.logFile };
}

/** Processes whose command line names this log file: the serving halves started with it. */
function servingPids(logFile: string): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(logFile);
      } catch {
        return false;
      }
    })
    .map(Number);
}

function kill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // gone already
  }
}

const alive = (pid: number): boolean => existsSync(`/proc/${pid}`) && !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));

function logLines(logFile: string): Array<Record<string, unknown> & { msg: string }> {
  return readFileSync(logFile, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown> & { msg: string });
}

/** A cproxy linked to the bootstrap sproxy with `secret` (hex), its user port echoing through it. */
async function cproxyWith(announcement: BootstrapAnnouncement, secret = announcement.secret, extra: string[] = []): Promise<{ proc: ProxyProcess; port: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'etcp-bootstrap-secret-'));
  const file = join(dir, 'secret');
  writeFileSync(file, secret, { mode: 0o600 });
  const started = await startCproxy(announcement.port, ['--secret-file', file, ...extra]);
  cleanups.push(async () => {
    await started.proc.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return started;
}

async function echoTarget(): Promise<TargetServer> {
  const target = await startEchoTarget();
  cleanups.push(() => target.close());
  return target;
}

describe('sproxy --bootstrap', () => {
  it('prints one line and exits; the sproxy it leaves serves one client, refuses others and a wrong secret, and exits after the clean exit', async () => {
    const target = await echoTarget();
    const { announcement, pid, logFile } = await announced(target);
    // 32 random bytes in hex: the digits are the secret, as `openssl rand -hex 32` makes one.
    const text = announcement.secret.toString('latin1');
    expect(text).toMatch(/^[0-9a-f]{64}$/);
    // Only the two halves' memory and the line have held the secret: no argument, no environment.
    expect(readFileSync(`/proc/${pid}/cmdline`, 'latin1')).not.toContain(text);
    expect(readFileSync(`/proc/${pid}/environ`, 'latin1')).not.toContain(text);

    const first = await cproxyWith(announcement);
    await first.proc.waitForLog((line) => line.msg === 'link up');
    const user = await connectUser(first.port);
    const echoed = await echoTransfer(user.socket, 256 * 1024);
    expect(echoed.receivedHash).toBe(echoed.sentHash);

    // A second client with the same secret: refused, the first one served on.
    const second = await cproxyWith(announcement);
    await second.proc.waitForLog((line) => String(line['reason']).includes('sproxy refused the link: too many clients (limit 1)'), 10_000, 'a refusal');
    expect(second.proc.countLogs((line) => line.msg.startsWith('link up'))).toBe(0);
    // A wrong secret: fails authentication.
    const wrong = await cproxyWith(announcement, Buffer.alloc(32, 7));
    await wrong.proc.waitForLog((line) => /authentication/.test(line.msg), 10_000, 'an authentication failure');
    const after = await echoTransfer(user.socket, 64 * 1024);
    expect(after.receivedHash, 'the first client still served').toBe(after.sentHash);
    user.socket.destroy();

    await first.proc.stop();
    const exited = await waitUntil(() => !alive(pid), 5000);
    expect(exited, `the bootstrap sproxy exited after the client closed; its log:\n${readFileSync(logFile, 'utf8').slice(-3000)}\ncproxy:\n${first.proc.tail()}`).toBe(true);
    const exiting = logLines(logFile).find((line) => line.msg === 'bootstrap sproxy exiting');
    expect(String(exiting?.['reason'])).toContain('client closed');
    expect(readFileSync(logFile, 'utf8')).not.toContain(text);
  }, 60_000);

  it('exits once its client has stayed away for the resume window', async () => {
    const target = await echoTarget();
    const { announcement, pid, logFile } = await announced(target, ['--resume-window', '2']);
    const client = await cproxyWith(announcement, announcement.secret, ['--resume-window', '2']);
    await client.proc.waitForLog((line) => line.msg === 'link up');
    await client.proc.crash(); // no goodbye
    await sleep(1000);
    expect(alive(pid), 'still waiting for its client within the window').toBe(true);
    expect(await waitUntil(() => !alive(pid), 8000), 'exited after the resume window').toBe(true);
    expect(logLines(logFile).map((line) => line.msg)).toContain('client did not come back within the resume window');
  }, 30_000);

  it('exits when no client comes within the resume window, takes the secret from stdin, and fails clearly on a full range', async () => {
    const target = await echoTarget();
    const secret = 'a secret of our own, read as a secret file is';
    const { announcement, pid } = await announced(target, ['--resume-window', '1', '--secret-stdin'], `  ${secret}  \nmore\n`);
    expect(announcement.secret.toString('latin1')).toBe(secret);
    expect(await waitUntil(() => !alive(pid), 6000), 'exited with no client').toBe(true);

    // Every port of a range taken: the announcing half says so in one line, with status 1.
    const { base, blockers } = await blockConsecutivePorts(3);
    cleanups.push(() => blockers.forEach((server) => server.close()));
    const full = await announce(target, [], '', `${base}-${base + 2}`);
    expect(full.code).toBe(1);
    expect(full.stdout).toBe('');
    expect(full.stderr.trim()).toBe(`sproxy: no free port in ${base}-${base + 2} to listen on (all in use; give another --port-range)`);
    // The serving half that found no port exits too (under coverage, a moment after its report).
    expect(await waitUntil(() => servingPids(full.logFile).length === 0, 5000), 'no sproxy left behind').toBe(true);
  }, 30_000);
});
