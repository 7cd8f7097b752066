/**
 * Roaming: how long a typist waits when the client's network changes under it, on two hosts in
 * namespaces with a secret on the link, a key every 20 ms through the tunnel:
 *   - address change: the client's address removed and another added (a laptop on a new network);
 *   - make before break: a new address the route prefers, the old one's packets silently dropped;
 *   - a forgotten link: the link's own connection dropped by a middlebox, new ones fine;
 *   - a silent outage of 6 s (and 6.1, 6.2 s), from the path's return to the first echo;
 *   - a laptop's sleep: cproxy stopped for 20 s, from SIGCONT to the sessions resumed.
 * Targets (issue 17): <= 500 ms, <= 1 s, (no goal: shown), <= 300 ms, <= 1 s.
 */
import { forgetConnectionsTo, preferNewAddress } from '../../netlab/path-faults.js';
import { TwoHostNetwork } from '../../netlab/two-hosts.js';
import { WanHosts } from '../../netlab/wan-hosts.js';
import { NODE, peerScript, procs } from '../harness/context.js';
import { removeAtExit } from '../harness/hosts.js';
import { ms, table } from '../harness/format.js';
import { progress, results, say } from '../harness/report.js';
import type { BenchSection } from '../harness/section.js';
import { HOST, freePort, isListening, onHost, sleep, waitFor, type BenchHost } from '../harness/system.js';
import { addTarget } from '../harness/targets.js';
import { startTunnel, stopPath, type Path } from '../paths.js';

const KEY_INTERVAL_MS = 20;
const OUTAGES_MS = [6000, 6100, 6200];
const SLEEP_MS = 20_000;

export const roaming: BenchSection = { name: 'roaming', run: () => measureRoaming() };

interface KeysResult {
  samples: number[];
  lost: number;
  echoedAt: number[];
}

interface Place {
  client: BenchHost;
  server: BenchHost;
  path: Path;
}

/** Two hosts, a target and the tunnel on them; `scenario` runs with them; then all of it goes. */
async function onTwoHosts<T>(name: string, hosts: TwoHostNetwork, open: () => Promise<void>, scenario: (place: Place) => Promise<T>): Promise<T> {
  const removed = removeAtExit(hosts);
  await open();
  const client: BenchHost = { ns: hosts.client, address: hosts.clientAddress };
  const server: BenchHost = { ns: hosts.server, address: TwoHostNetwork.SERVER_ADDRESS };
  try {
    const targetPort = await freePort();
    procs.spawn(`${name}-target`, ...onHost(server, NODE, [peerScript('target'), String(targetPort), HOST]));
    await waitFor(() => isListening(targetPort, server), 10_000, `${name}: target listening`);
    const path = await startTunnel(name, targetPort, { tls: true, client, server, logLevel: 'info' });
    try {
      return await scenario({ client, server, path });
    } finally {
      await stopPath(path);
    }
  } finally {
    // The emulated path has a forwarder to stop too.
    if (hosts instanceof WanHosts) await hosts.close();
    else hosts.destroyNamespaces();
    removed();
  }
}

/** Types for `seconds` through the tunnel; `during` runs meanwhile (after 1 s of typing). */
async function typeKeys(name: string, place: Place, seconds: number, during: () => Promise<void>): Promise<KeysResult | null> {
  const keys = procs.spawn(`${name}-keys`, ...onHost(place.client, NODE, [peerScript('keys'), `${HOST}:${place.path.port}`, String(KEY_INTERVAL_MS), String(seconds)]));
  await sleep(1000);
  await during();
  return procs.jsonResult<KeysResult>(keys, (seconds + 15) * 1000);
}

const longest = (result: KeysResult | null): number => (result === null || result.lost > 0 ? Number.POSITIVE_INFINITY : Math.max(...result.samples));

async function measureRoaming(): Promise<void> {
  const tag = (letter: string): string => `${letter}${process.pid % 10_000}`;
  const veth = (letter: string): TwoHostNetwork => new TwoHostNetwork(tag(letter));
  const rows: string[][] = [];
  const out: Record<string, number> = {};

  progress('roaming: the client address replaced by another');
  const change = veth('a');
  out['addressChangeMs'] = await onTwoHosts('roam-change', change, async () => change.create(), (place) =>
    typeKeys('roam-change', place, 4, async () => change.changeClientAddress('10.77.0.3')).then(longest),
  );

  progress('roaming: a new preferred address, the old one silently dead');
  const prefer = veth('b');
  out['makeBeforeBreakMs'] = await onTwoHosts('roam-prefer', prefer, async () => prefer.create(), (place) =>
    typeKeys('roam-prefer', place, 4, async () => preferNewAddress(prefer, '10.77.0.5')).then(longest),
  );

  progress('roaming: a middlebox forgets the link');
  const forget = veth('c');
  out['forgottenLinkMs'] = await onTwoHosts('roam-forget', forget, async () => forget.create(), (place) => {
    const linkPort = place.path.linkPort as number;
    return typeKeys('roam-forget', place, 5, async () => forgetConnectionsTo(forget, linkPort)).then(longest);
  });

  // The outage: the emulated path's blackhole (WanHosts joins the same two hosts by a forwarder).
  const firstEchoes: number[] = [];
  for (const outageMs of OUTAGES_MS) {
    progress(`roaming: a silent outage of ${outageMs / 1000} s`);
    const wan = new WanHosts(tag('d'));
    let restoredAt = 0;
    const result = await onTwoHosts('roam-outage', wan, () => wan.open({ delayMs: 1 }), (place) =>
      typeKeys('roam-outage', place, outageMs / 1000 + 4, async () => {
        await wan.set({ blackhole: true });
        await sleep(outageMs);
        restoredAt = Date.now();
        await wan.set({ blackhole: false });
      }),
    );
    const first = result?.echoedAt.find((at) => at >= restoredAt);
    firstEchoes.push(first === undefined ? Number.POSITIVE_INFINITY : first - restoredAt);
  }
  out['outageFirstEchoMs'] = Math.max(...firstEchoes);

  progress(`roaming: cproxy stopped for ${SLEEP_MS / 1000} s (a laptop's sleep)`);
  const nap = veth('e');
  out['sleepResumeMs'] = await onTwoHosts('roam-sleep', nap, async () => nap.create(), async (place) => {
    const cproxy = place.path.cproxy;
    if (cproxy === undefined) return Number.NaN;
    let wokeAt = 0;
    await typeKeys('roam-sleep', place, SLEEP_MS / 1000 + 3, async () => {
      process.kill(cproxy.pid, 'SIGSTOP');
      await sleep(SLEEP_MS);
      wokeAt = Date.now();
      process.kill(cproxy.pid, 'SIGCONT');
    });
    const resumed = cproxy
      .output()
      .split('\n')
      .flatMap((line) => {
        try {
          return [JSON.parse(line) as { msg?: string; time?: number }];
        } catch {
          return [];
        }
      })
      .find((line) => line.msg === 'link up: sessions resumed' && (line.time ?? 0) >= wokeAt);
    return resumed?.time === undefined ? Number.POSITIVE_INFINITY : resumed.time - wokeAt;
  });

  const goals: [string, string, number | null][] = [
    ['addressChangeMs', 'address replaced by another: longest wait for an echo', 500],
    ['makeBeforeBreakMs', 'new preferred address, old one silently dead: longest wait', 1000],
    ['forgottenLinkMs', 'the link forgotten by a middlebox: longest wait', null],
    ['outageFirstEchoMs', `silent outage of ${OUTAGES_MS.map((o) => o / 1000).join('/')} s: first echo after the path returns (worst)`, 300],
    ['sleepResumeMs', `cproxy stopped ${SLEEP_MS / 1000} s: sessions resumed after waking`, 1000],
  ];
  for (const [key, label, goal] of goals) {
    const value = out[key] as number;
    rows.push([label, ms(value, 0), goal === null ? '' : `<= ${goal}`]);
    if (goal !== null) addTarget(`roaming: ${label}`, value, `${ms(value, 0)} ms`, `<= ${goal} ms`, value <= goal);
  }
  results['roaming'] = { ...out, outageFirstEchoesMs: firstEchoes };
  say(`\n== Roaming: a key every ${KEY_INTERVAL_MS} ms through the tunnel (secret) on two hosts (ms) ==`);
  say(table(rows, ['case', 'ms', 'goal']));
}
