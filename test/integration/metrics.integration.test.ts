import { describe, expect, it } from 'vitest';
import { useCleanup } from '../helpers/cleanup.js';
import { echoKillingEachRound } from '../helpers/faults.js';
import { scrape, type Scrape } from '../helpers/prometheus.js';
import { startCproxy, type LogPredicate, type ProxyProcess } from '../helpers/proxies.js';
import { secretFile } from '../helpers/secrets.js';
import { echoTransfer, waitClosed } from '../helpers/targets.js';
import { startTunnel } from '../helpers/tunnel.js';

const defer = useCleanup();

const SESSIONS = 3;
const SESSION_BYTES = 256 * 1024;
const KILLS = 2;

/** The port a proxy's metrics server said it listens on. */
async function metricsPort(proc: ProxyProcess): Promise<number> {
  const line = await proc.waitForLog((l) => l.msg === 'metrics listening', 20_000, 'metrics listening line');
  return Number(String(line['listen']).split(':').pop());
}

/** Waits until `proc` has logged `count` lines matching `predicate`. */
async function loggedTimes(proc: ProxyProcess, count: number, predicate: LogPredicate): Promise<void> {
  for (let seen = proc.countLogs(predicate); seen < count; seen = proc.countLogs(predicate)) {
    await proc.waitForNextLog(predicate);
  }
}

const sumOf = (proc: ProxyProcess, predicate: LogPredicate, field: string): number =>
  proc.logs.filter(predicate).reduce((sum, line) => sum + Number(line[field]), 0);

const m = (suffix: string): string => `eternal_tcp_${suffix}`;

describe('--metrics on both proxies', () => {
  it('sessions, bytes, link kills and their resumes, and a wrong secret move the counters a real parser reads off /metrics', async () => {
    const { file } = secretFile(defer);
    const { sproxy, cproxy, connect } = await startTunnel(defer, {
      sproxyArgs: ['--secret-file', file, '--metrics', '127.0.0.1:0'],
      cproxyArgs: ['--secret-file', file, '--metrics', '0'],
    });
    const sproxyMetrics = await metricsPort(sproxy.proc);
    const cproxyMetrics = await metricsPort(cproxy.proc);
    const both = async (): Promise<[Scrape, Scrape]> => [await scrape(cproxyMetrics), await scrape(sproxyMetrics)];
    // Scraped once each side has logged `count` such events: their counters moved as they were logged.
    const bothOnceLogged = async (count: number, atCproxy: LogPredicate, atSproxy: LogPredicate): Promise<[Scrape, Scrape]> => {
      await loggedTimes(cproxy.proc, count, atCproxy);
      await loggedTimes(sproxy.proc, count, atSproxy);
      return both();
    };

    let [atCproxy, atSproxy] = await both();
    expect(atCproxy.value(m('info'), { program: 'cproxy', version: '0.1.0' })).toBe(1);
    expect(atSproxy.value(m('info'), { program: 'sproxy', version: '0.1.0' })).toBe(1);
    for (const at of [atCproxy, atSproxy]) {
      expect(at.value(m('links_up'))).toBe(1);
      expect(at.value(m('sessions_opened_total'))).toBe(0);
      expect(at.value(m('resumes_total'))).toBe(0);
    }

    // Sessions carrying bytes each way through the echo target, none lost: every byte counted once.
    const users = await Promise.all(Array.from({ length: SESSIONS }, () => connect()));
    for (const user of users) {
      const echo = await echoTransfer(user.socket, SESSION_BYTES);
      expect(echo.receivedHash).toBe(echo.sentHash);
    }
    [atCproxy, atSproxy] = await both();
    for (const at of [atCproxy, atSproxy]) {
      expect(at.value(m('sessions_opened_total'))).toBe(SESSIONS);
      expect(at.value(m('sessions_open'))).toBe(SESSIONS);
      expect(at.value(m('payload_sent_bytes_total'))).toBe(SESSIONS * SESSION_BYTES);
      expect(at.value(m('payload_received_bytes_total'))).toBe(SESSIONS * SESSION_BYTES);
      // Loopback: a round trip well under a second, measured by each side.
      expect(at.value(m('link_rtt_seconds'))).toBeGreaterThanOrEqual(0);
      expect(at.value(m('link_rtt_seconds'))).toBeLessThan(1);
    }

    // The link killed from outside while a block is in flight, each time; every kill is resumed.
    const [first] = users;
    if (first === undefined) throw new Error('no session');
    const killed = await echoKillingEachRound(first.socket, sproxy.port, KILLS);
    expect(killed.receivedHash).toBe(killed.sentHash);
    expect(killed.kills).toBe(KILLS);
    const cproxyResumed: LogPredicate = (l) => l.msg === 'link up: sessions resumed';
    const sproxyResumed: LogPredicate = (l) => l.msg === 'link up: client resumed';
    [atCproxy, atSproxy] = await bothOnceLogged(KILLS, cproxyResumed, sproxyResumed);
    for (const at of [atCproxy, atSproxy]) {
      expect(at.value(m('links_up'))).toBe(1);
      expect(at.value(m('link_downs_total'), { reason: 'ETCP_ERR_LINK_CLOSED' })).toBeGreaterThanOrEqual(KILLS);
      expect(at.value(m('resumes_total'))).toBe(KILLS);
      expect(at.histogram(m('resume_downtime_seconds')).count).toBe(KILLS);
      // Every byte went across at least once more (what was in flight at a kill, again).
      expect(at.value(m('payload_sent_bytes_total'))).toBeGreaterThanOrEqual(SESSIONS * SESSION_BYTES + KILLS * 1024 * 1024);
    }
    // What each side logged of its link downs and resends, the counters say too.
    const linkDowns = (at: Scrape): number => Object.values(at.byLabel(m('link_downs_total'), 'reason')).reduce((a, b) => a + b, 0);
    expect(linkDowns(atCproxy)).toBe(cproxy.proc.countLogs((l) => l.msg === 'link down'));
    // sproxy's include a connection killed before its handshake (an express lane joining, say).
    expect(linkDowns(atSproxy)).toBe(sproxy.proc.countLogs((l) => l.msg === 'link down' || l.msg === 'connection rejected'));
    expect(atCproxy.value(m('resent_packets_total'))).toBe(sumOf(cproxy.proc, cproxyResumed, 'resentPackets'));
    expect(atSproxy.value(m('resent_packets_total'))).toBe(sumOf(sproxy.proc, sproxyResumed, 'resentPackets'));
    // The kills caught a block in flight, one way or the other (the echo's way, most often).
    expect((atCproxy.value(m('resent_packets_total')) ?? 0) + (atSproxy.value(m('resent_packets_total')) ?? 0)).toBeGreaterThan(0);

    // The users close: every session finishes cleanly on both sides.
    for (const user of users) user.socket.end();
    await Promise.all(users.map((user) => waitClosed(user)));
    const closed: LogPredicate = (l) => l.msg === 'session closed';
    [atCproxy, atSproxy] = await bothOnceLogged(SESSIONS, closed, closed);
    for (const at of [atCproxy, atSproxy]) {
      expect(at.value(m('sessions_open'))).toBe(0);
      expect(at.byLabel(m('sessions_closed_total'), 'reason')).toEqual({ closed: SESSIONS, 'reset-by-peer': 0, 'reset-sent': 0, lost: 0 });
      expect(at.value(m('auth_failures_total'))).toBe(0);
    }

    // A cproxy with the wrong secret: refused on both sides, counted on both.
    const other = secretFile(defer);
    const wrong = await startCproxy(sproxy.port, ['--secret-file', other.file, '--metrics', '0']);
    defer(() => wrong.proc.stop());
    const wrongMetrics = await metricsPort(wrong.proc);
    // Each side's first line of it is written at once (their repeats collapse into a count later,
    // which the counters do not wait for).
    await wrong.proc.waitForLog((l) => l.msg === 'authentication with sproxy failed');
    await sproxy.proc.waitForLog((l) => l.msg === 'authentication failed');
    const atWrong = await scrape(wrongMetrics);
    atSproxy = await scrape(sproxyMetrics);
    // cproxy gives up after three refusals in a row; sproxy counted each it saw so far.
    expect(atWrong.value(m('auth_failures_total'))).toBeGreaterThanOrEqual(3);
    expect(atWrong.value(m('link_downs_total'), { reason: 'ETCP_ERR_AUTH' })).toBe(atWrong.value(m('auth_failures_total')));
    expect(atWrong.value(m('links_up'))).toBe(0);
    expect(atWrong.family(m('link_rtt_seconds')).metrics).toEqual([]);
    expect(atSproxy.value(m('auth_failures_total'))).toBeGreaterThanOrEqual(1);
    expect(atSproxy.value(m('link_downs_total'), { reason: 'ETCP_ERR_AUTH' })).toBe(atSproxy.value(m('auth_failures_total')));
    // The good client is still the one linked.
    expect(atSproxy.value(m('links_up'))).toBe(1);
  });

  it('without --metrics, nothing listens for it and nothing is logged of it', async () => {
    const { sproxy, cproxy } = await startTunnel(defer);
    for (const proc of [sproxy.proc, cproxy.proc]) expect(proc.countLogs((l) => l.msg === 'metrics listening')).toBe(0);
  });
});
