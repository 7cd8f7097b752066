import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTemporarySecret } from '../../demo/temporary-secret.js';
import { REPO_ROOT, startCproxy, startSproxy, type LogLine, type ProxyProcess } from '../helpers/proxies.js';
import { sleep, waitUntil } from './ssh-support.js';
import { waitForPort } from './pair.js';
import { TwoHosts, requireRoot } from './topology.js';

/**
 * A team's fleet: three sproxy instances behind a real HAProxy (deploy/haproxy/haproxy.cfg and
 * haproxy-plain.cfg, as shipped) on the server host, 20 cproxy on the client host, each with an echo stream checked byte
 * for byte. Every client's link is killed 10 times and the client host's address changes once:
 * each client must resume on the instance that holds its sessions, every time (source-address
 * affinity could not do it: the address changes). Then one instance dies: only its clients lose
 * their sessions, and are told so; the others stream on.
 */

const CLIENTS = 20;
const INSTANCES = 3;
const FRONTEND_PORT = 6200;
const FIRST_INSTANCE_PORT = 6201;
const FIRST_USER_PORT = 5301;
const ECHO_PORT = 7000;
const ROAMED_ADDRESS = '10.77.0.3';
const KILLS = 10;

interface StreamResult {
  port: number;
  rounds: number;
  bytes: number;
  intact: boolean;
  error: string | null;
}

const isResumed = (line: LogLine): boolean => line.msg === 'link up: sessions resumed';

describe('a fleet of sproxy behind HAProxy: every resume on its own instance', () => {
  let hosts: TwoHosts | undefined;
  const processes: ProxyProcess[] = [];
  let streams: ChildProcess | undefined;

  beforeEach(() => {
    requireRoot();
    hosts = new TwoHosts('fleet');
    hosts.create();
  });

  afterEach(async () => {
    try {
      streams?.kill('SIGKILL');
      await Promise.all(processes.splice(0).map((proc) => proc.stop()));
    } finally {
      await hosts?.destroy();
      hosts = streams = undefined;
    }
  });

  it.each([
    ['TLS links, routed on the ClientHello', 'haproxy.cfg', true],
    ['plain links, routed on the first packet', 'haproxy-plain.cfg', false],
  ] as const)('%s: 20 clients through 10 link kills and an address change, zero sessions lost; one instance dies: only its clients are told theirs are lost', async (_name, config, withSecret) => {
    const h = hosts as TwoHosts;
    const secretArgs = withSecret ? ['--secret-file', createTemporarySecret().file] : [];
    h.spawn(h.server, [process.execPath, '-e', `require('node:net').createServer((s) => s.on('error', () => s.destroy()).pipe(s)).listen(${ECHO_PORT}, '127.0.0.1')`]);
    await waitForPort(h, h.server, ECHO_PORT);
    const instances = await Promise.all(
      Array.from({ length: INSTANCES }, (_, i) =>
        startSproxy(ECHO_PORT, [...secretArgs, '--proxy-protocol'], `127.0.0.1:${FIRST_INSTANCE_PORT + i}`, h.prefix(h.server)),
      ),
    );
    processes.push(...instances.map((instance) => instance.proc));
    const haproxyLog: string[] = [];
    const haproxy = h.spawn(h.server, [
      'env',
      `ETCP_LISTEN=${TwoHosts.SERVER_ADDRESS}:${FRONTEND_PORT}`,
      ...instances.map((_, i) => `ETCP_SPROXY${i + 1}=127.0.0.1:${FIRST_INSTANCE_PORT + i}`),
      'haproxy', '-db', '-f', join(REPO_ROOT, 'deploy', 'haproxy', config),
    ]);
    haproxy.stdout?.setEncoding('utf8').on('data', (chunk: string) => haproxyLog.push(chunk));
    haproxy.stderr?.setEncoding('utf8').on('data', (chunk: string) => haproxyLog.push(chunk));
    await waitForPort(h, h.server, FRONTEND_PORT).catch((error: unknown) => {
      throw new Error(`HAProxy did not start: ${haproxyLog.join('')}`, { cause: error });
    });

    const clients = await Promise.all(
      Array.from({ length: CLIENTS }, (_, i) =>
        startCproxy(`${TwoHosts.SERVER_ADDRESS}:${FRONTEND_PORT}`, secretArgs, `127.0.0.1:${FIRST_USER_PORT + i}`, h.prefix(h.client)),
      ),
    );
    processes.push(...clients.map((client) => client.proc));
    const clientIds = await Promise.all(clients.map(async (client) => String((await client.proc.waitForLog((line) => line.msg === 'link up', 30_000))['client'])));

    // Every stream runs from here to the end.
    streams = h.spawn(h.client, [process.execPath, join(REPO_ROOT, 'test', 'fixtures', 'echo-streams.mjs'), clients.map((client) => client.port).join(',')]);
    const results: StreamResult[] = [];
    createInterface({ input: streams.stdout! }).on('line', (line) => results.push(JSON.parse(line) as StreamResult));
    const streamsDone = once(streams, 'close');
    await sleep(1000);

    const resumeEveryClient = (what: string): Promise<unknown> =>
      Promise.all(clients.map((client) => client.proc.waitForNextLog(isResumed, 30_000, `a resume after ${what}`)));
    for (let kill = 1; kill <= KILLS; kill++) {
      const resumed = resumeEveryClient(`kill ${kill}`);
      expect(h.killLink(FRONTEND_PORT), `links killed in round ${kill}`).toBeGreaterThanOrEqual(CLIENTS);
      await resumed;
      await sleep(300);
    }
    const roamed = resumeEveryClient('the address change');
    h.changeClientAddress(ROAMED_ADDRESS);
    await roamed;
    // PROXY protocol: sproxy saw each client's own (roamed) address, not HAProxy's. Its lines come
    // through its own stderr, which may reach us after cproxy's.
    const resumedFromRoamed = (id: string): boolean =>
      instances.some((instance) =>
        instance.proc.logs.some((line) => line.msg === 'link up: client resumed' && line['client'] === id && String(line['peer']).startsWith(`${ROAMED_ADDRESS}:`)),
      );
    expect(await waitUntil(() => clientIds.every(resumedFromRoamed), 10_000), 'every client resumed from its new address, as sproxy logged it').toBe(true);

    // Each client came up and resumed on one instance only, and every instance has clients.
    const instanceOf = new Map<string, Set<number>>();
    instances.forEach((instance, index) => {
      for (const line of instance.proc.logs) {
        if (!line.msg.startsWith('link up')) continue;
        const seen = instanceOf.get(String(line['client'])) ?? new Set<number>();
        seen.add(index);
        instanceOf.set(String(line['client']), seen);
      }
    });
    expect([...instanceOf.keys()].sort()).toEqual([...clientIds].sort());
    for (const [client, seen] of instanceOf) expect([...seen], `the instances client ${client} linked to`).toHaveLength(1);
    const clientsOf = (index: number): string[] => clientIds.filter((id) => instanceOf.get(id)?.has(index));
    for (let index = 0; index < INSTANCES; index++) expect(clientsOf(index).length, `clients of instance ${index + 1}`).toBeGreaterThan(0);
    for (const client of clients) expect(client.proc.countLogs((line) => line.msg === 'session lost; closing the user connection')).toBe(0);

    // One instance dies: its clients are told their sessions are lost (by another instance,
    // where HAProxy sends them once it sees the first is gone); the others notice nothing.
    const doomed = 1;
    const doomedClients = new Set(clientsOf(doomed));
    await instances[doomed]?.proc.crash();
    await Promise.all(
      clients
        .filter((_, i) => doomedClients.has(clientIds[i] as string))
        .map((client) => client.proc.waitForLog((line) => line.msg === 'session lost; closing the user connection', 30_000, "'session lost'")),
    );
    await sleep(2000);
    streams.stdin?.end();
    await streamsDone;

    expect(results).toHaveLength(CLIENTS);
    for (const [i, client] of clients.entries()) {
      const result = results.find((r) => r.port === client.port);
      expect(result?.intact, `stream ${i}: every echoed byte checked`).toBe(true);
      if (doomedClients.has(clientIds[i] as string)) {
        expect(result?.error, `stream ${i} (instance ${doomed + 1}, gone) ended`).not.toBeNull();
      } else {
        expect(result?.error, `stream ${i} went on to the end`).toBeNull();
        expect(client.proc.countLogs((line) => line.msg === 'session lost; closing the user connection')).toBe(0);
      }
      expect(result?.rounds, `stream ${i} echoed blocks`).toBeGreaterThan(10);
    }
    expect(haproxyLog.join('')).not.toMatch(/\[ALERT\]/);
  }, 240_000);
});
