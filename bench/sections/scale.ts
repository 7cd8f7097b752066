/**
 * Scale: 10,000 idle sessions through cproxy (real sockets, each proven by one echoed byte), with
 * both proxies' RSS before, with them and after they close; then 1,000 sessions echoing 16 KiB
 * rounds, with errors, throughput and peak RSS. Targets: <= 16 KiB per idle session on each
 * proxy, 1,000 active sessions without errors.
 */
import type { Socket } from 'node:net';
import { NODE, peerScript, procs } from '../harness/context.js';
import { gbit, mib, ms, table } from '../harness/format.js';
import { progress, results, say } from '../harness/report.js';
import type { BenchSection } from '../harness/section.js';
import { summarize, type Percentiles } from '../harness/stats.js';
import { freePort, isListening, nowMs, rssBytes, sleep, waitFor, withTimeout } from '../harness/system.js';
import { TARGETS, addTarget } from '../harness/targets.js';
import { startTunnel, stopPath } from '../paths.js';
import { EchoProbe, openEcho } from '../probes/echo.js';

export const IDLE_SESSIONS = 10_000;
const ACTIVE_SESSIONS = 1000;
const ACTIVE_SECONDS = 5;
const ACTIVE_CHUNK_BYTES = 16 * 1024;
/** Connections being opened at once. */
const OPEN_CONCURRENCY = 250;

export const scale: BenchSection = { name: 'scale', run: () => measureScale() };

/** Opens `count` echo connections, each proven end to end by one echoed byte. */
async function openMany(port: number, count: number, sockets: Socket[]): Promise<{ opened: number; failed: number; firstError?: string }> {
  let next = 0;
  let failed = 0;
  let firstError: string | undefined;
  const worker = async (): Promise<void> => {
    while (next < count) {
      next++;
      try {
        const socket = await openEcho(port, 20_000);
        sockets.push(socket);
        socket.on('error', () => undefined);
        await withTimeout(
          new Promise<void>((resolvePromise, reject) => {
            socket.once('data', () => resolvePromise());
            socket.once('close', () => reject(new Error('closed before the echo')));
            socket.write('.');
          }),
          20_000,
          'first echo',
        );
        socket.removeAllListeners('close');
      } catch (error) {
        failed++;
        firstError ??= error instanceof Error ? error.message : String(error);
      }
    }
  };
  await Promise.all(Array.from({ length: OPEN_CONCURRENCY }, worker));
  return { opened: count - failed, failed, ...(firstError === undefined ? {} : { firstError }) };
}

async function measureScale(): Promise<void> {
  const targetPort = await freePort();
  const target = procs.spawn('scale-target', NODE, [peerScript('target'), String(targetPort)]);
  await waitFor(() => isListening(targetPort), 10_000, 'scale target listening');
  const sproxyArgs = ['--max-sessions-per-client', String(IDLE_SESSIONS * 2)];

  // Idle sessions
  const idle: Record<string, unknown> = {};
  {
    const path = await startTunnel('scale-idle', targetPort, { sproxyArgs });
    const sockets: Socket[] = [];
    try {
      const probe = await EchoProbe.open(path.port);
      await withTimeout(probe.send(), 5000, 'probe');
      await sleep(1000);
      const cproxyPid = path.cproxy?.pid as number;
      const sproxyPid = path.sproxy?.pid as number;
      const before = { cproxy: rssBytes(cproxyPid), sproxy: rssBytes(sproxyPid) };
      progress(`scale: opening ${IDLE_SESSIONS} idle sessions`);
      const started = nowMs();
      const open = await withTimeout(openMany(path.port, IDLE_SESSIONS, sockets), 120_000, 'opening idle sessions');
      const openSeconds = (nowMs() - started) / 1000;
      await sleep(2000);
      const after = { cproxy: rssBytes(cproxyPid), sproxy: rssBytes(sproxyPid) };
      const n = Math.max(1, open.opened);
      const perSession = { cproxy: (after.cproxy - before.cproxy) / n, sproxy: (after.sproxy - before.sproxy) / n };
      progress('scale: closing idle sessions');
      for (const socket of sockets) socket.destroy();
      sockets.length = 0;
      await sleep(2500);
      const afterClose = { cproxy: rssBytes(cproxyPid), sproxy: rssBytes(sproxyPid) };
      probe.close();
      Object.assign(idle, { sessions: IDLE_SESSIONS, ...open, openSeconds, rssBefore: before, rssAfter: after, rssAfterClose: afterClose, bytesPerSession: perSession });
      addTarget('idle session memory, cproxy RSS', perSession.cproxy, `${(perSession.cproxy / 1024).toFixed(1)} KiB`, `<= ${TARGETS.idleSessionBytes / 1024} KiB`, perSession.cproxy <= TARGETS.idleSessionBytes && open.failed === 0);
      addTarget('idle session memory, sproxy RSS', perSession.sproxy, `${(perSession.sproxy / 1024).toFixed(1)} KiB`, `<= ${TARGETS.idleSessionBytes / 1024} KiB`, perSession.sproxy <= TARGETS.idleSessionBytes && open.failed === 0);
    } finally {
      for (const socket of sockets) socket.destroy();
      await stopPath(path);
    }
  }

  // Active sessions
  const active: Record<string, unknown> = {};
  {
    const path = await startTunnel('scale-active', targetPort, { sproxyArgs });
    const sockets: Socket[] = [];
    try {
      progress(`scale: opening ${ACTIVE_SESSIONS} active sessions`);
      const open = await withTimeout(openMany(path.port, ACTIVE_SESSIONS, sockets), 60_000, 'opening active sessions');
      progress(`scale: ${sockets.length} sessions echoing for ${ACTIVE_SECONDS} s`);
      // Peak memory while every session moves data: what read buffers and queues cost under load.
      const cproxyPid = path.cproxy?.pid as number;
      const sproxyPid = path.sproxy?.pid as number;
      const peakRss = { cproxy: rssBytes(cproxyPid), sproxy: rssBytes(sproxyPid) };
      const rssSampler = setInterval(() => {
        peakRss.cproxy = Math.max(peakRss.cproxy, rssBytes(cproxyPid));
        peakRss.sproxy = Math.max(peakRss.sproxy, rssBytes(sproxyPid));
      }, 200);
      let echoedBytes = 0;
      let rounds = 0;
      let errorCount = 0;
      let firstError: string | undefined;
      const roundTimes: number[] = [];
      const stopAt = nowMs() + ACTIVE_SECONDS * 1000;
      const started = nowMs();
      const echoLoop = (socket: Socket, index: number): Promise<void> =>
        new Promise<void>((resolvePromise) => {
          const payload = Buffer.alloc(ACTIVE_CHUNK_BYTES, index % 251);
          let received = 0;
          let mismatch = false;
          let t0 = 0;
          let finished = false;
          const finish = (error?: string): void => {
            if (finished) return;
            finished = true;
            if (error !== undefined) {
              errorCount++;
              firstError ??= error;
            }
            socket.removeAllListeners('data');
            resolvePromise();
          };
          socket.on('error', (error) => finish(`socket error: ${error.message}`));
          socket.on('close', () => finish('connection closed'));
          socket.on('data', (chunk: Buffer) => {
            for (let i = 0; i < chunk.length; i += 997) if (chunk[i] !== index % 251) mismatch = true;
            received += chunk.length;
            echoedBytes += chunk.length;
            if (mismatch) return finish('echoed data differs');
            if (received > ACTIVE_CHUNK_BYTES) return finish('more bytes echoed than sent');
            if (received < ACTIVE_CHUNK_BYTES) return;
            rounds++;
            roundTimes.push(nowMs() - t0);
            received = 0;
            if (nowMs() >= stopAt) return finish();
            t0 = nowMs();
            socket.write(payload);
          });
          t0 = nowMs();
          socket.write(payload);
        });
      await withTimeout(Promise.all(sockets.map((socket, i) => echoLoop(socket, i))), (ACTIVE_SECONDS + 30) * 1000, 'active sessions').finally(() =>
        clearInterval(rssSampler),
      );
      const seconds = (nowMs() - started) / 1000;
      const bitsPerSecond = (echoedBytes * 8) / seconds;
      const totalErrors = errorCount + open.failed;
      Object.assign(active, {
        sessions: ACTIVE_SESSIONS, opened: open.opened, openFailures: open.failed, echoErrors: errorCount,
        firstError: firstError ?? open.firstError ?? null, chunkBytes: ACTIVE_CHUNK_BYTES, seconds, rounds,
        echoedBytes, echoedBitsPerSecond: bitsPerSecond, roundTripMs: summarize(roundTimes), peakRss,
      });
      addTarget(`${ACTIVE_SESSIONS} active sessions, errors`, totalErrors, `${totalErrors} errors (${gbit(bitsPerSecond)} Gbit/s echoed)`, '0 errors', totalErrors === 0 && open.opened === ACTIVE_SESSIONS);
    } finally {
      for (const socket of sockets) socket.destroy();
      await stopPath(path);
    }
  }
  await procs.stop(target);
  results['scale'] = { idle, active };
  const idleTyped = idle as { opened?: number; failed?: number; openSeconds?: number; rssBefore?: { cproxy: number; sproxy: number }; rssAfter?: { cproxy: number; sproxy: number }; rssAfterClose?: { cproxy: number; sproxy: number }; bytesPerSession?: { cproxy: number; sproxy: number } };
  say('\n== Scale ==');
  say(
    table(
      ['cproxy', 'sproxy'].map((who) => {
        const k = who as 'cproxy' | 'sproxy';
        return [`${IDLE_SESSIONS} idle sessions, ${who}`, mib(idleTyped.rssBefore?.[k]), mib(idleTyped.rssAfter?.[k]), mib(idleTyped.rssAfterClose?.[k]),
          idleTyped.bytesPerSession === undefined ? 'n/a' : (idleTyped.bytesPerSession[k] / 1024).toFixed(1)];
      }),
      ['', 'RSS before MiB', 'with sessions MiB', 'after close MiB', 'KiB/session'],
    ),
  );
  say(`idle sessions opened: ${idleTyped.opened ?? 'n/a'} (failed ${idleTyped.failed ?? 'n/a'}) in ${idleTyped.openSeconds?.toFixed(1) ?? 'n/a'} s`);
  const a = active as {
    opened?: number; openFailures?: number; echoErrors?: number; echoedBitsPerSecond?: number; rounds?: number; roundTripMs?: Percentiles;
    firstError?: string | null; peakRss?: { cproxy: number; sproxy: number };
  };
  say(
    `${ACTIVE_SESSIONS} active sessions (16 KiB echo rounds, ${ACTIVE_SECONDS} s): opened ${a.opened ?? 'n/a'}, open failures ${a.openFailures ?? 'n/a'}, ` +
      `echo errors ${a.echoErrors ?? 'n/a'}, ${gbit(a.echoedBitsPerSecond ?? Number.NaN)} Gbit/s echoed, ${a.rounds ?? 'n/a'} rounds, ` +
      `round p50 ${ms(a.roundTripMs?.p50 ?? Number.NaN, 1)} ms p99 ${ms(a.roundTripMs?.p99 ?? Number.NaN, 1)} ms, ` +
      `peak RSS cproxy ${mib(a.peakRss?.cproxy)} MiB, sproxy ${mib(a.peakRss?.sproxy)} MiB${a.firstError ? `; first error: ${a.firstError}` : ''}`,
  );
}

// ── profiling (optional) ────────────────────────────────────────────────────
