import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { canRestartInPlace, HEAP_FLOOR_FLAG } from '../../common/ops/heap-floor.js';
import { useCleanup } from '../helpers/cleanup.js';
import { scrape } from '../helpers/prometheus.js';
import { REPO_ROOT, startCproxy, startSproxy, type ProxyProcess, type StartedProxy } from '../helpers/proxies.js';
import { connectUser, startTarget } from '../helpers/targets.js';

/**
 * The heap floor (common/ops/heap-floor.ts) as the programs run: they restart themselves in place
 * with it where Node can (process.execve), and with it a bulk transfer's read buffers are freed by
 * scavenges, not by full mark-compacts of the heap. Counted from the proxies' own
 * nodejs_gc_duration_seconds on /metrics around a 1 GiB upload through one session. Without the
 * floor the same upload took 13-16 full collections per proxy on Node 24 and ~40 on Node 20.
 */

const defer = useCleanup();

const UPLOAD_BYTES = 1024 * 1024 * 1024;
/** Full collections a proxy may do during the upload with the floor (0 were seen; a few at most is V8's freedom). */
const MAJOR_GCS_AT_MOST = 3;
const restartsInPlace = canRestartInPlace();

async function metricsPort(proc: ProxyProcess): Promise<number> {
  const line = await proc.waitForLog((l) => l.msg === 'metrics listening', 20_000, 'metrics listening line');
  return Number(String(line['listen']).split(':').pop());
}

/** Collections of `kind` the proxy counted so far (none of that kind yet: 0). */
async function gcCount(port: number, kind: 'major' | 'minor'): Promise<number> {
  return (await scrape(port)).labelledHistogramCount('nodejs_gc_duration_seconds', 'kind', kind) ?? 0;
}

/** The program's command line as the kernel has it (the same pid after a restart in place). */
const commandLine = (proc: ProxyProcess): string[] => readFileSync(`/proc/${proc.pid}/cmdline`, 'latin1').split('\0').filter(Boolean);

/**
 * A tunnel to a sink that counts what arrives, with --metrics on both proxies; `nodeFlags` go on
 * node's own command line before bin/NAME.js, as a user would give them.
 */
async function tunnelToSink(nodeFlags: string[]): Promise<{ sproxy: StartedProxy; cproxy: StartedProxy; sinkPort: number; received: () => number; ended: Promise<void> }> {
  let received = 0;
  let markEnded: () => void = () => {};
  const ended = new Promise<void>((resolve) => (markEnded = resolve));
  const sink = await startTarget((socket) => {
    socket.on('data', (chunk: Buffer) => (received += chunk.length));
    socket.on('end', () => {
      socket.end();
      markEnded();
    });
  });
  defer(() => sink.close());
  const runWith = (name: 'cproxy' | 'sproxy'): [string[], string] => [[process.execPath, ...nodeFlags], join(REPO_ROOT, 'bin', `${name}.js`)];
  const sproxy = await startSproxy(sink.port, ['--metrics', '127.0.0.1:0'], '127.0.0.1:0', ...runWith('sproxy'));
  defer(() => sproxy.proc.stop());
  const cproxy = await startCproxy(sproxy.port, ['--metrics', '127.0.0.1:0'], '127.0.0.1:0', ...runWith('cproxy'));
  defer(() => cproxy.proc.stop());
  return { sproxy, cproxy, sinkPort: sink.port, received: () => received, ended };
}

/** Uploads UPLOAD_BYTES through cproxy and returns the full and minor collections each proxy did meanwhile. */
async function uploadCountingCollections(sproxy: StartedProxy, cproxy: StartedProxy, ended: Promise<void>, received: () => number): Promise<Array<{ name: string; major: number; minor: number }>> {
  const ports = [await metricsPort(cproxy.proc), await metricsPort(sproxy.proc)];
  const before = await Promise.all(ports.map(async (port) => ({ major: await gcCount(port, 'major'), minor: await gcCount(port, 'minor') })));
  const user = await connectUser(cproxy.port);
  defer(() => user.socket.destroy());
  const block = Buffer.alloc(1024 * 1024, 0x5a);
  for (let sent = 0; sent < UPLOAD_BYTES; sent += block.length) {
    if (!user.socket.write(block)) await new Promise((resolve) => user.socket.once('drain', resolve));
  }
  user.socket.end();
  await ended;
  expect(received()).toBe(UPLOAD_BYTES);
  return Promise.all(
    ports.map(async (port, i) => ({
      name: i === 0 ? 'cproxy' : 'sproxy',
      major: (await gcCount(port, 'major')) - (before[i]?.major ?? 0),
      minor: (await gcCount(port, 'minor')) - (before[i]?.minor ?? 0),
    })),
  );
}

describe(`the heap floor, on Node ${process.version}`, () => {
  it(restartsInPlace ? 'the programs restart themselves in place with it, and a 1 GiB upload takes no full collections' : 'this Node cannot restart a program in place: the runtime line says the floor is missing and how to set it', async () => {
    const { sproxy, cproxy, ended, received } = await tunnelToSink([]);
    if (!restartsInPlace) {
      for (const proc of [sproxy.proc, cproxy.proc]) {
        const runtime = await proc.waitForLog((l) => l.msg.startsWith('runtime'));
        expect(runtime).toMatchObject({ level: 30, heapFloor: false });
        expect(runtime.msg).toContain(HEAP_FLOOR_FLAG);
      }
      return;
    }
    for (const counts of await uploadCountingCollections(sproxy, cproxy, ended, received)) {
      expect(counts.major, `${counts.name}'s full collections`).toBeLessThanOrEqual(MAJOR_GCS_AT_MOST);
      expect(counts.minor, `${counts.name}'s scavenges`).toBeGreaterThan(0);
    }
    for (const proc of [sproxy.proc, cproxy.proc]) {
      // Same pid (the test's child), now running node with the flag first.
      expect(commandLine(proc).slice(1, 2)).toEqual([HEAP_FLOOR_FLAG]);
      expect(await proc.waitForLog((l) => l.msg.startsWith('runtime'))).toMatchObject({ level: 20, heapFloor: true });
    }
  }, 120_000);

  it('a floor the user gives on node\'s command line is theirs: no restart, and the upload takes no full collections', async () => {
    const { sproxy, cproxy, ended, received } = await tunnelToSink(['--initial-old-space-size=160']);
    for (const counts of await uploadCountingCollections(sproxy, cproxy, ended, received)) {
      expect(counts.major, `${counts.name}'s full collections`).toBeLessThanOrEqual(MAJOR_GCS_AT_MOST);
    }
    for (const proc of [sproxy.proc, cproxy.proc]) {
      const flags = commandLine(proc).filter((word) => word.startsWith('--initial-old-space-size'));
      expect(flags).toEqual(['--initial-old-space-size=160']);
      expect(await proc.waitForLog((l) => l.msg.startsWith('runtime'))).toMatchObject({ heapFloor: true });
    }
  }, 120_000);
});
