/**
 * Resume: (a) the link killed with a reset (ss -K), from the kill to the echo of a byte sent
 * right after it; (b) the link's packets dropped both ways (iptables) for longer than
 * --dead-after, a byte sent into the outage, from the path's return to its echo.
 * Targets: <= 100 ms after a kill, <= 1 s after the path returns.
 */
import { ms, table } from '../harness/format.js';
import { SilentDrop } from '../harness/faults.js';
import { progress, results, say } from '../harness/report.js';
import type { BenchSection } from '../harness/section.js';
import { summarize } from '../harness/stats.js';
import { nowMs, sleep, withTimeout } from '../harness/system.js';
import { TARGETS, addTarget } from '../harness/targets.js';
import { startTunnel, stopPath } from '../paths.js';
import { EchoProbe } from '../probes/echo.js';
import { killLink } from '../probes/link-sockets.js';

const KILL_REPEATS = 10;
const OUTAGES_MS = [4000, 4400, 4800]; // longer than the default --dead-after (3000 ms)

export const resume: BenchSection = { name: 'resume', run: ({ targetPort }) => measureResume(targetPort) };

async function measureResume(targetPort: number): Promise<void> {
  // (a) link killed with a reset
  const killSamples: number[] = [];
  const killDetails: { killedSockets: number; ms: number; error?: string }[] = [];
  {
    const path = await startTunnel('resume-kill', targetPort, { logLevel: 'info' });
    const probe = await EchoProbe.open(path.port);
    try {
      for (let i = 0; i < 20; i++) await withTimeout(probe.send(), 5000, 'warm-up echo');
      for (let i = 0; i < KILL_REPEATS; i++) {
        progress(`resume: RST kill ${i + 1}/${KILL_REPEATS}`);
        // cproxy redials at once after a lost link only once per second (its backoff cap): wait that out.
        await sleep(1100);
        await withTimeout(probe.send(), 5000, 'echo before the kill');
        const t0 = nowMs();
        const killed = killLink(path.linkPort as number);
        const echoed = probe.send();
        try {
          const t = await withTimeout(echoed, 10_000, 'echo after the kill');
          killSamples.push(t - t0);
          killDetails.push({ killedSockets: killed, ms: t - t0 });
        } catch (error) {
          echoed.catch(() => undefined);
          killSamples.push(Number.POSITIVE_INFINITY);
          killDetails.push({ killedSockets: killed, ms: Number.NaN, error: String(error) });
        }
      }
    } finally {
      probe.close();
      await stopPath(path);
    }
  }
  // (b) path silently dropped for longer than --dead-after, then restored
  const outageSamples: number[] = [];
  const outageDetails: { outageMs: number; ms: number; iptablesRestoreMs: number; error?: string }[] = [];
  {
    const path = await startTunnel('resume-outage', targetPort, { logLevel: 'info' });
    const probe = await EchoProbe.open(path.port);
    const drop = new SilentDrop(path.linkPort as number);
    try {
      for (let i = 0; i < 5; i++) await withTimeout(probe.send(), 5000, 'warm-up echo');
      for (const [i, outageMs] of OUTAGES_MS.entries()) {
        progress(`resume: silent outage ${i + 1}/${OUTAGES_MS.length} (${outageMs} ms)`);
        await sleep(1100);
        await withTimeout(probe.send(), 10_000, 'echo before the outage');
        drop.drop();
        let echoed: Promise<number> | null = null;
        // From the moment the first rule starts to go (deleting both takes some milliseconds).
        let t0 = Number.NaN;
        let restoreMs = Number.NaN;
        try {
          await sleep(300);
          echoed = probe.send(); // sent into the outage: delivered once the link is back
          await sleep(outageMs - 300);
        } finally {
          t0 = nowMs();
          drop.restore();
          restoreMs = nowMs() - t0;
        }
        try {
          const t = await withTimeout(echoed, 15_000, 'echo after the outage');
          outageSamples.push(t - t0);
          outageDetails.push({ outageMs, ms: t - t0, iptablesRestoreMs: restoreMs });
        } catch (error) {
          echoed.catch(() => undefined);
          outageSamples.push(Number.POSITIVE_INFINITY);
          outageDetails.push({ outageMs, ms: Number.NaN, iptablesRestoreMs: restoreMs, error: String(error) });
        }
      }
    } finally {
      drop.restore();
      probe.close();
      await stopPath(path);
    }
  }
  const kill = summarize(killSamples);
  const outage = summarize(outageSamples);
  results['resume'] = {
    unit: 'ms',
    rstKill: { note: 'ss -K on the link port; from the kill to the echo of a byte sent right after it', ...kill, runs: killDetails },
    silentOutage: { note: 'iptables DROP both ways on the link port, longer than --dead-after (3000 ms); from the restore to the echo of a byte sent during the outage', ...outage, runs: outageDetails },
  };
  addTarget('resume after RST kill, p50', kill.p50, `${ms(kill.p50, 1)} ms`, `<= ${TARGETS.resumeKillMs} ms`, kill.p50 <= TARGETS.resumeKillMs);
  addTarget('resume after RST kill, max', kill.max, `${ms(kill.max, 1)} ms`, `<= ${TARGETS.resumeKillMs} ms`, kill.max <= TARGETS.resumeKillMs);
  addTarget('resume after silent outage (from path return), max', outage.max, `${ms(outage.max, 1)} ms`, `<= ${TARGETS.resumeOutageMs} ms`, outage.max <= TARGETS.resumeOutageMs);
  say('\n== Resume (ms) ==');
  say(
    table(
      [
        [`link killed by RST (ss -K), x${KILL_REPEATS}`, ms(kill.p50, 1), ms(kill.max, 1), killDetails.map((d) => ms(d.ms, 0)).join(' ')],
        [`path dropped ${OUTAGES_MS.map((o) => o / 1000).join('/')} s, then restored`, ms(outage.p50, 1), ms(outage.max, 1), outageDetails.map((d) => ms(d.ms, 0)).join(' ')],
      ],
      ['event', 'p50', 'max', 'each run'],
    ),
  );
}
