import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import { useCleanup } from '../helpers/cleanup.js';
import { REPO_ROOT } from '../helpers/proxies.js';
import { connectUser } from '../helpers/targets.js';

const defer = useCleanup();

async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('npm run demo', () => {
  it('serves the built-in line service through the proxies while --cut-every cuts the link', async () => {
    const [userPort, linkPort] = [await freePort(), await freePort()];
    const demo = spawn(process.execPath, [join(REPO_ROOT, 'dist', 'demo', 'demo.js'), '--port', String(userPort), '--link-port', String(linkPort), '--cut-every', '1'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    defer(async () => {
      if (demo.exitCode === null) {
        demo.kill('SIGTERM');
        await once(demo, 'exit');
      }
    });
    const stderr: string[] = [];
    createInterface({ input: demo.stderr }).on('line', (line) => stderr.push(line));
    const stdout: string[] = [];
    const instructions = new Promise<void>((resolve) => {
      createInterface({ input: demo.stdout }).on('line', (line) => {
        stdout.push(line);
        if (line.includes('Stop with Ctrl-C')) resolve();
      });
    });
    await instructions;
    expect(stdout.join('\n')).toContain(`telnet localhost ${userPort}`);

    // cproxy may still be starting: retry the connection a few times.
    let user = null;
    for (let attempt = 0; attempt < 50 && user === null; attempt++) {
      user = await connectUser(userPort).catch(() => null);
      if (user === null) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(user).not.toBeNull();
    const socket = user!.socket;
    defer(() => socket.destroy());
    socket.setEncoding('utf8');
    let text = '';
    const allLines = new Promise<void>((resolve) => {
      socket.on('data', (chunk: string) => {
        text += chunk;
        if (text.includes('line 15 of 15')) resolve();
      });
    });
    socket.write('count 15\r\n');
    await allLines;
    const numbered = text.split('\r\n').filter((line) => line.startsWith('line '));
    expect(numbered).toEqual(Array.from({ length: 15 }, (_, i) => `line ${i + 1} of 15`));
    // 15 lines at 200 ms take 3 s: the link was cut at least twice meanwhile.
    expect(stderr.filter((line) => line.includes('cutting the link')).length).toBeGreaterThanOrEqual(2);
    expect(user!.errors).toEqual([]);

    demo.kill('SIGINT');
    const [code] = (await once(demo, 'exit')) as [number | null];
    expect(code).toBe(0);
  });
});
