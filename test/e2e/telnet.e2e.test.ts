import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { LogLine } from '../helpers/proxies.js';
import { LINK_PORT, USER_PORT, startPair, stopPair, waitForPort, type ProxyPair } from './pair.js';
import { ANSWER_LINE, NUMBERED_LINE, TelnetSession, type ReceivedLine } from './telnet-session.js';
import { TwoHosts, requireRoot } from './topology.js';

/**
 * A real telnet session (telnet ⇄ cproxy ⇄ link ⇄ sproxy ⇄ telnetd) between two network
 * namespaces, through a client address change and through a silent outage longer than the
 * dead-link timeout. With ETCP_E2E_RELAY=plain (plain socat relays, no resume) both cases fail.
 */

requireRoot();

const TELNET_PORT = 23;
const LINES = 50;
/** 50 lines, one every 0.2 s: about 10 s of output, during which the link is broken. */
const INTERVAL_S = 0.2;
/** expect's bound on silence: a session that does not resume fails instead of hanging. */
const SILENCE_TIMEOUT_S = 40;
const FINISH_GUARD_MS = 60_000;
/** The fault is injected once this many lines have arrived. */
const FAULT_AFTER_LINE = 5;
/** Longer than the 3 s dead-link timeout. */
const OUTAGE_MS = 5000;
const ROAMED_ADDRESS = '10.77.0.3';

const ALL_LINES = Array.from({ length: LINES }, (_, i) => i + 1);

let hosts: TwoHosts | undefined;
let pair: ProxyPair | undefined;
let telnet: TelnetSession | undefined;

beforeEach(async () => {
  hosts = new TwoHosts('tel');
  hosts.create();
  hosts.spawn(hosts.server, [
    'socat',
    `TCP-LISTEN:${TELNET_PORT},bind=127.0.0.1,fork,reuseaddr`,
    'EXEC:"/usr/sbin/telnetd -h -E /bin/sh",nofork',
  ]);
  await waitForPort(hosts, hosts.server, TELNET_PORT);
  pair = await startPair(hosts, TELNET_PORT);
});

afterEach(async () => {
  try {
    telnet?.dispose();
    if (pair !== undefined) await stopPair(pair);
  } finally {
    telnet = undefined;
    pair = undefined;
    await hosts?.destroy();
    hosts = undefined;
  }
});

function startTelnet(h: TwoHosts): TelnetSession {
  telnet = new TelnetSession(h, {
    host: '127.0.0.1',
    port: USER_PORT,
    count: LINES,
    intervalS: INTERVAL_S,
    silenceTimeoutS: SILENCE_TIMEOUT_S,
  });
  return telnet;
}

const numbered = (n: number) => (line: ReceivedLine) => NUMBERED_LINE.exec(line.text)?.[1] === String(n);

/** Every numbered line exactly once and in order, the shell answered, telnet ended cleanly. */
async function expectIntactSession(session: TelnetSession): Promise<void> {
  const { code } = await session.finish(FINISH_GUARD_MS);
  const transcript = session.transcript();
  expect(session.failures, `expect reported failures; transcript:\n${transcript}`).toEqual([]);
  expect(session.numberedLines(), `numbered lines 1..${LINES}, each once, in order; transcript:\n${transcript}`).toEqual(
    ALL_LINES,
  );
  expect(session.lines.filter((line) => ANSWER_LINE.test(line.text)), 'the shell answers afterwards').toHaveLength(1);
  expect(code, 'expect exit code').toBe(0);
}

const at = (line: LogLine): number => line.time;

describe('telnet through cproxy and sproxy between two hosts', () => {
  it('keeps the session when the client host changes its address mid-output (roaming)', async () => {
    const h = hosts!;
    const session = startTelnet(h);
    const trigger = await session.waitForLine(numbered(FAULT_AFTER_LINE), 20_000, `line L${FAULT_AFTER_LINE}-END`);
    const roamedAt = Date.now();
    h.changeClientAddress(ROAMED_ADDRESS);

    await session.finish(FINISH_GUARD_MS);
    const firstAfter = session.lines[session.lines.indexOf(trigger) + 1];
    console.log(
      firstAfter === undefined
        ? 'roaming: no output after the address change'
        : `roaming: output resumed ${firstAfter.atMs - roamedAt} ms after the address change (${JSON.stringify(firstAfter.text)})`,
    );

    await expectIntactSession(session);
    // The output really was interrupted: some lines arrived only after the address change.
    expect(session.lines.some((line) => NUMBERED_LINE.test(line.text) && line.atMs > roamedAt + 1000)).toBe(true);

    const sproxy = pair?.sproxy;
    if (sproxy === undefined) expect.fail('no sproxy (plain relays): nothing can resume');
    const resumed = await sproxy.waitForLog(
      (line) => line.msg === 'link up: client resumed' && String(line['peer']).startsWith(`${ROAMED_ADDRESS}:`),
      20_000,
      `'link up: client resumed' from ${ROAMED_ADDRESS}`,
    );
    expect(at(resumed)).toBeGreaterThan(roamedAt);
    expect(sproxy.countLogs((line) => line.msg === 'link up: new client'), 'one client, resumed, never new again').toBe(1);
  }, 90_000);

  it('keeps the session through a silent outage longer than the dead-link timeout, and resumes quickly', async () => {
    const h = hosts!;
    const session = startTelnet(h);
    await session.waitForLine(numbered(FAULT_AFTER_LINE), 20_000, `line L${FAULT_AFTER_LINE}-END`);
    const restore = h.dropLinkPackets(LINK_PORT);
    const droppedAt = Date.now();
    // Taken before the rule is deleted: the path may be open, and cproxy through it, while the
    // deleting command is still running, so the path's return is dated from that command's start.
    let restoredAt = Number.POSITIVE_INFINITY;
    try {
      // The outage itself is the scenario: it has to outlast the dead-link timeout.
      await new Promise((resolve) => setTimeout(resolve, OUTAGE_MS));
    } finally {
      restoredAt = Date.now();
      restore();
    }

    await session.finish(FINISH_GUARD_MS);
    const firstAfter = session.lines.find((line) => line.atMs >= restoredAt);
    const firstByteMs = firstAfter === undefined ? null : firstAfter.atMs - restoredAt;
    console.log(
      firstByteMs === null
        ? 'silent outage: no output after the path returned'
        : `silent outage: first byte ${firstByteMs} ms after the path returned (${JSON.stringify(firstAfter?.text)})`,
    );

    await expectIntactSession(session);
    // The outage really silenced the path: nothing arrived between its start and its end.
    const during = session.lines.filter((line) => line.atMs > droppedAt + 500 && line.atMs < restoredAt);
    expect(during, 'lines received during the outage').toEqual([]);

    // The link was declared dead during the outage and the session resumed on a new one after it.
    const cproxyLogs = pair?.cproxy?.logs ?? [];
    const down = cproxyLogs.find((line) => line.msg === 'link down' && at(line) >= droppedAt);
    expect(down, 'cproxy: link down during the outage').toBeDefined();
    expect(down?.['code']).toBe('ETCP_ERR_LINK_DEAD');
    expect(at(down!)).toBeLessThan(restoredAt);
    const resumed = cproxyLogs.find((line) => line.msg === 'link up: sessions resumed' && at(line) >= restoredAt);
    expect(resumed, 'cproxy: sessions resumed after the path returned').toBeDefined();

    // Design: the link is back within about a second of the path returning.
    expect(firstByteMs).not.toBeNull();
    expect(firstByteMs!).toBeLessThan(2500);
  }, 90_000);
});
