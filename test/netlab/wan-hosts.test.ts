import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WanHosts } from '../../netlab/wan-hosts.js';

const run = promisify(execFile);

/**
 * The emulated WAN checked against itself, with the hosts' own tools (ping, iperf3): what it is
 * set to do is what real traffic across it sees. Needs root, python3, ping and iperf3 (.ci/run
 * installs them).
 */
describe('WanHosts: two hosts joined by the user-space WAN emulator', () => {
  const hosts = new WanHosts(`w${process.pid % 10_000}`);

  beforeAll(async () => {
    await hosts.open({ delayMs: 25, seed: 7 });
  });
  afterAll(async () => {
    await hosts.close();
  });

  /** ping from the client host to the server host; round trips in ms (NaN for none). */
  async function ping(count: number, intervalSeconds = 0.05): Promise<{ received: number; min: number; avg: number }> {
    const { stdout } = await run('ip', [
      'netns', 'exec', hosts.client, 'ping', '-n', '-q', '-c', String(count), '-i', String(intervalSeconds), '-W', '1', WanHosts.SERVER_ADDRESS,
    ]).catch((error: { stdout?: string }) => ({ stdout: error.stdout ?? '' }));
    const received = Number(/(\d+) received/.exec(stdout)?.[1] ?? Number.NaN);
    const rtt = /= ([\d.]+)\/([\d.]+)\//.exec(stdout);
    return { received, min: Number(rtt?.[1] ?? Number.NaN), avg: Number(rtt?.[2] ?? Number.NaN) };
  }

  it('gives an idle round trip of twice the one-way delay, and follows a change of delay at once', async () => {
    const at25 = await ping(10);
    expect(at25.received).toBe(10);
    expect(at25.min).toBeGreaterThanOrEqual(50);
    expect(at25.avg).toBeLessThan(65);

    await hosts.set({ delayMs: 60 });
    const at60 = await ping(5);
    expect(at60.min).toBeGreaterThanOrEqual(120);
    expect(at60.avg).toBeLessThan(140);

    await hosts.set({ delayMs: 0 });
    const at0 = await ping(5);
    expect(at0.avg).toBeLessThan(10);
    await hosts.set({ delayMs: 25 });
  });

  it('limits a TCP transfer to the bottleneck rate, and lets it come close to it', async () => {
    await hosts.set({ rateMbit: 20, queueMs: 100 });
    const server = spawn('ip', ['netns', 'exec', hosts.server, 'iperf3', '-s', '-1', '-B', WanHosts.SERVER_ADDRESS], { stdio: 'ignore' });
    try {
      await waitUntil(async () => (await run('ip', ['netns', 'exec', hosts.server, 'ss', '-Hltn', 'sport = :5201'])).stdout.trim() !== '');
      const transfer = run('ip', ['netns', 'exec', hosts.client, 'iperf3', '-c', WanHosts.SERVER_ADDRESS, '-t', '4', '-J']);
      // What a packet arriving now would wait, as the transfer fills the queue: some, never past its depth.
      const waits: number[] = [];
      for (let i = 0; i < 20; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        waits.push((await hosts.stats()).upload.waitMs);
      }
      const { stdout } = await transfer;
      expect(Math.max(...waits)).toBeGreaterThan(1);
      expect(Math.max(...waits)).toBeLessThanOrEqual(101);
      expect((await hosts.stats()).upload.waitMs).toBe(0); // drained
      const received = (JSON.parse(stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second;
      expect(received).toBeGreaterThan(0.8 * 20e6);
      expect(received).toBeLessThan(1.03 * 20e6);
      const stats = await hosts.stats();
      // The sender filled the queue at times, never past its depth.
      expect(stats.upload.maxQueueMs).toBeGreaterThan(1);
      expect(stats.upload.maxQueueMs).toBeLessThanOrEqual(100);
    } finally {
      server.kill();
      await hosts.set({ rateMbit: 0 });
    }
  });

  it('drops what arrives when the queue already holds its depth', async () => {
    await hosts.set({ rateMbit: 10, queueMs: 20 });
    const before = await hosts.stats();
    // 100 packets of 1428 bytes at once: 143 KB, where 20 ms at 10 Mbit/s is 25 KB.
    await run('ip', [
      'netns', 'exec', hosts.client, 'ping', '-n', '-q', '-l', '100', '-c', '100', '-s', '1400', '-W', '1', WanHosts.SERVER_ADDRESS,
    ]).catch(() => undefined);
    const after = await hosts.stats();
    expect(after.upload.droppedQueue - before.upload.droppedQueue).toBeGreaterThan(0);
    expect(after.upload.maxQueueMs).toBeLessThanOrEqual(20);
    await hosts.set({ rateMbit: 0, queueMs: 0 });
  });

  it('drops about the share of packets it is told to, at random', async () => {
    await hosts.set({ loss: 0.2 }, 'upload');
    const before = await hosts.stats();
    const result = await ping(200, 0.005);
    const after = await hosts.stats();
    await hosts.set({ loss: 0 });
    const sent = after.upload.packets - before.upload.packets;
    const lost = after.upload.droppedLoss - before.upload.droppedLoss;
    expect(sent).toBe(200);
    expect(lost / sent).toBeGreaterThan(0.1);
    expect(lost / sent).toBeLessThan(0.3);
    expect(result.received).toBe(200 - lost);
    expect(after.download.droppedLoss - before.download.droppedLoss).toBe(0);
  });

  it('blackholes the path while it runs, and restores it', async () => {
    await hosts.set({ blackhole: true });
    expect((await ping(3, 0.2)).received).toBe(0);
    await hosts.set({ blackhole: false });
    expect((await ping(3, 0.2)).received).toBe(3);
  });

  it('refuses a setting it does not know or cannot apply, saying which', async () => {
    await expect(hosts.set({ loss: 2 })).rejects.toThrow(/loss is a probability/);
    await expect(hosts.set({ delayMs: -1 })).rejects.toThrow(/delayMs must be a number >= 0/);
    await expect(hosts.set({ jitterMs: 5 } as never)).rejects.toThrow(/unknown setting 'jitterMs'/);
    expect((await ping(2)).received).toBe(2);
  });
});

async function waitUntil(condition: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`not ready within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
