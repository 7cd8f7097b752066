import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { useCleanup } from '../helpers/cleanup.js';
import type { LogLine, ProxyProcess } from '../helpers/proxies.js';
import { secretFile } from '../helpers/secrets.js';
import { startTap, type Tap } from '../helpers/tap.js';
import { startTunnel } from '../helpers/tunnel.js';

const defer = useCleanup();

const RUN_MS = 60_000;
/** The first seconds: the failures that tell cproxy to give up, and the first, shorter, delays. */
const SETTLING_MS = 10_000;

const mentionsAuthentication = (line: LogLine): boolean => /authenticat/i.test(JSON.stringify(line));

/** The events a log stands for: each line once, and a line with a count for as many as it says. */
function eventsLogged(proc: ProxyProcess, messagePrefix: string): number {
  return proc.logs
    .filter((line) => line.msg.startsWith(messagePrefix))
    .reduce((sum, line) => sum + (typeof line['repeated'] === 'number' ? line['repeated'] : 1), 0);
}

function untilElapsed(startedAt: number, ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, startedAt + ms - Date.now())));
}

describe('a cproxy with the wrong secret, left running', () => {
  it('makes only a handful of attempts after the first seconds, and each side logs only a few lines about it', async () => {
    const server = secretFile(defer);
    const client = secretFile(defer);
    let tap: Tap | null = null;
    const { sproxy, cproxy } = await startTunnel(defer, {
      sproxyArgs: ['--secret-file', server.file],
      cproxyArgs: ['--secret-file', client.file],
      waitForLink: false,
      // Counts the connections cproxy makes: one per attempt, whatever either side logs.
      via: async (sproxyPort) => {
        tap = await startTap(defer, sproxyPort);
        return tap.port;
      },
    });
    const startedAt = Date.now();
    const attempts = (): number => (tap as unknown as Tap).clientToServer.length;
    await untilElapsed(startedAt, SETTLING_MS);
    const attemptsWhileSettling = attempts();
    await untilElapsed(startedAt, RUN_MS);
    const lateAttempts = attempts() - attemptsWhileSettling;
    const sproxyLines = sproxy.proc.countLogs(mentionsAuthentication);
    const cproxyLines = cproxy.proc.countLogs(mentionsAuthentication);
    console.log(
      `wrong secret: ${attemptsWhileSettling} attempts in the first ${SETTLING_MS / 1000} s, ${lateAttempts} in the next ` +
        `${(RUN_MS - SETTLING_MS) / 1000} s; lines about authentication: sproxy ${sproxyLines}, cproxy ${cproxyLines}`,
    );

    expect(attemptsWhileSettling).toBeGreaterThanOrEqual(3); // it did give up
    expect(lateAttempts).toBeLessThanOrEqual(6);
    expect(lateAttempts).toBeGreaterThanOrEqual(1); // and it still tries, for a secret fixed meanwhile
    expect(sproxyLines).toBeLessThanOrEqual(8);
    expect(cproxyLines).toBeLessThanOrEqual(8);

    // However long the backoff, a user connection is refused at once, not held until the next attempt.
    const connectedAt = Date.now();
    const user = connect({ host: '127.0.0.1', port: cproxy.port });
    defer(() => user.destroy());
    const errors: string[] = [];
    user.on('error', (error: NodeJS.ErrnoException) => errors.push(error.code ?? error.message));
    await new Promise((resolve) => user.once('close', resolve));
    expect(errors).toEqual(['ECONNRESET']);
    expect(Date.now() - connectedAt).toBeLessThan(3000);

    // Nothing was lost unseen: the lines and their counts (stopped, each side writes those still open) add up to the attempts.
    await cproxy.proc.stop();
    await sproxy.proc.stop();
    expect(eventsLogged(sproxy.proc, 'authentication failed')).toBe(attempts());
    expect(eventsLogged(cproxy.proc, 'authentication with sproxy failed')).toBe(attempts());
  }, RUN_MS + 30_000);
});
