import { createServer } from 'node:net';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { serveMetrics, type MetricsSource } from '../../../common/ops/metrics-server.js';
import { StartupError } from '../../../common/ops/cli-options.js';
import type { LogFields, Logger } from '../../../common/support/logger.js';
import { useCleanup } from '../../helpers/cleanup.js';

const defer = useCleanup();

/** A logger that keeps every line, for the assertions. */
function recordingLogger(): Logger & { lines: Array<{ level: string; fields: LogFields; message: string }> } {
  const lines: Array<{ level: string; fields: LogFields; message: string }> = [];
  const at = (level: string) => (fields: LogFields, message: string): void => {
    lines.push({ level, fields, message });
  };
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

const TEXT_FORMAT = 'text/plain; version=0.0.4; charset=utf-8';

describe('serveMetrics', () => {
  it('answers GET /metrics with the text read at each request, says where it listens, and refuses other paths and methods', async () => {
    let scrapes = 0;
    const source: MetricsSource = { contentType: TEXT_FORMAT, text: async () => `eternal_tcp_scrapes ${++scrapes}\n` };
    const logger = recordingLogger();
    const server = await serveMetrics(source, { host: '127.0.0.1', port: 0 }, logger);
    defer(() => server.close());
    expect(server.address.port).toBeGreaterThan(0);
    expect(logger.lines).toEqual([{ level: 'info', fields: { listen: `127.0.0.1:${server.address.port}`, path: '/metrics' }, message: 'metrics listening' }]);
    const base = `http://127.0.0.1:${server.address.port}`;

    for (const expected of [1, 2]) {
      const response = await fetch(`${base}/metrics`);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toBe(TEXT_FORMAT);
      expect(await response.text()).toBe(`eternal_tcp_scrapes ${expected}\n`);
    }
    // Prometheus may add a query string; it is the same page.
    expect(await (await fetch(`${base}/metrics?x=1`)).text()).toBe('eternal_tcp_scrapes 3\n');
    expect((await fetch(`${base}/`)).status).toBe(404);
    expect((await fetch(`${base}/metricsx`)).status).toBe(404);
    const post = await fetch(`${base}/metrics`, { method: 'POST', body: 'x' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET');
    expect(scrapes).toBe(3);
  });

  it('answers 500 and logs why when the metrics cannot be read, and goes on serving', async () => {
    let fail = true;
    const source: MetricsSource = {
      contentType: TEXT_FORMAT,
      text: async () => {
        if (fail) throw new Error('collector broke');
        return 'ok 1\n';
      },
    };
    const logger = recordingLogger();
    const server = await serveMetrics(source, { host: '127.0.0.1', port: 0 }, logger);
    defer(() => server.close());
    const url = `http://127.0.0.1:${server.address.port}/metrics`;
    expect((await fetch(url)).status).toBe(500);
    expect(logger.lines.at(-1)).toEqual({ level: 'error', fields: { reason: 'collector broke' }, message: 'metrics could not be collected' });
    fail = false;
    expect(await (await fetch(url)).text()).toBe('ok 1\n');
  });

  it('a port in use is a StartupError naming --metrics, not an EADDRINUSE a caller would take for its own listener\'s', async () => {
    const taken = createServer();
    taken.listen(0, '127.0.0.1');
    await once(taken, 'listening');
    defer(() => new Promise((resolve) => taken.close(resolve)));
    const port = (taken.address() as { port: number }).port;
    const source: MetricsSource = { contentType: TEXT_FORMAT, text: async () => '' };
    const attempt = serveMetrics(source, { host: '127.0.0.1', port }, recordingLogger());
    await expect(attempt).rejects.toBeInstanceOf(StartupError);
    await expect(attempt).rejects.toThrow(new RegExp(`^cannot listen for --metrics on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`));
  });

  it('close() does not wait for a scrape in progress: its connection is ended, and close resolves', async () => {
    let collecting = (): void => {};
    const started = new Promise<void>((resolve) => (collecting = resolve));
    // A collection that never finishes, as a stuck scrape would be.
    const source: MetricsSource = {
      contentType: TEXT_FORMAT,
      text: () => {
        collecting();
        return new Promise<string>(() => {});
      },
    };
    const server = await serveMetrics(source, { host: '127.0.0.1', port: 0 }, recordingLogger());
    const stuck = fetch(`http://127.0.0.1:${server.address.port}/metrics`);
    await started;
    await server.close();
    await expect(stuck).rejects.toThrow();
  });
});
