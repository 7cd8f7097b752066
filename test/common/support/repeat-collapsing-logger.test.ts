import { describe, expect, it } from 'vitest';
import type { LogFields, Logger } from '../../../common/support/logger.js';
import { MAX_REPEAT_KINDS, REPEAT_INTERVAL_MS, RepeatCollapsingLogger } from '../../../common/support/repeat-collapsing-logger.js';
import { ManualClock } from '../../helpers/manual-clock.js';

interface Line {
  level: keyof Logger;
  message: string;
  fields: LogFields;
  atMs: number;
}

/** A logger that keeps what it is given, stamped with the clock's time. */
function recordingLogger(clock: ManualClock): { logger: Logger; lines: Line[] } {
  const lines: Line[] = [];
  const at = (level: keyof Logger) => (fields: LogFields, message: string) => lines.push({ level, message, fields, atMs: clock.now() });
  return { logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }, lines };
}

/** Identified by the peer's host (not its port) and the code, as sproxy's failure lines are. */
function collapsing(): { log: RepeatCollapsingLogger; lines: Line[]; clock: ManualClock } {
  const clock = new ManualClock({ afterTimer: async () => {} });
  const { logger, lines } = recordingLogger(clock);
  const identify = (fields: LogFields): unknown[] => [String(fields['peer']).replace(/:\d+$/, ''), fields['code']];
  return { log: new RepeatCollapsingLogger(logger, { clock, identify }), lines, clock };
}

const failure = (port: number, code = 'ETCP_ERR_AUTH', attempt = 1): LogFields => ({ peer: `192.0.2.7:${port}`, code, attempt });

describe('RepeatCollapsingLogger', () => {
  it('passes a line through, counts its repeats within the interval, then writes one line with the count and the latest fields', async () => {
    const { log, lines, clock } = collapsing();
    log.warn(failure(40_001), 'authentication failed');
    expect(lines).toEqual([{ level: 'warn', message: 'authentication failed', fields: failure(40_001), atMs: 0 }]);
    for (let attempt = 2; attempt <= 6; attempt++) {
      await clock.advance(1000);
      log.warn(failure(40_000 + attempt, 'ETCP_ERR_AUTH', attempt), 'authentication failed');
    }
    expect(lines).toHaveLength(1);
    await clock.advance(REPEAT_INTERVAL_MS - 5000);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toEqual({
      level: 'warn',
      message: 'authentication failed (repeated 5 times in the last 15 s)',
      fields: { ...failure(40_006, 'ETCP_ERR_AUTH', 6), repeated: 5 },
      atMs: REPEAT_INTERVAL_MS,
    });
  });

  it('keeps counting while the repeats go on, one line per interval, and forgets a kind after an interval without any', async () => {
    const { log, lines, clock } = collapsing();
    // One repeat a second for 40 s, then silence.
    for (let second = 0; second < 40; second++) {
      log.info(failure(second), 'connect attempt failed');
      await clock.advance(1000);
    }
    await clock.advance(60_000);
    expect(lines.map((line) => [line.atMs, line.fields['repeated'] ?? null])).toEqual([
      [0, null],
      [15_000, 14], // 1 s … 14 s
      [30_000, 15], // 15 s … 29 s
      [45_000, 10], // 30 s … 39 s
    ]);
    expect(lines[2]?.message).toBe('connect attempt failed (repeated 15 times in the last 15 s)');
    expect(clock.pendingTimers).toBe(0); // forgotten after the quiet interval

    // Forgotten, the next one is written at once.
    log.info(failure(1), 'connect attempt failed');
    expect(lines).toHaveLength(5);
    expect(lines[4]).toMatchObject({ message: 'connect attempt failed', atMs: clock.now() });
  });

  it('writes a line rarer than the interval every time, with no count line', async () => {
    const { log, lines, clock } = collapsing();
    for (let i = 0; i < 4; i++) {
      log.error(failure(i), 'authentication with sproxy failed');
      await clock.advance(REPEAT_INTERVAL_MS * 2);
    }
    expect(lines.map((line) => line.message)).toEqual(Array.from({ length: 4 }, () => 'authentication with sproxy failed'));
  });

  it('tells kinds apart by level, message and the identifying fields, and not by the others', async () => {
    const { log, lines, clock } = collapsing();
    log.warn(failure(1), 'authentication failed');
    log.warn(failure(2, 'ETCP_ERR_AUTH', 99), 'authentication failed'); // another port and attempt: a repeat
    log.warn(failure(3, 'ETCP_ERR_HANDSHAKE'), 'authentication failed'); // another code
    log.warn({ ...failure(4), peer: '192.0.2.8:4' }, 'authentication failed'); // another host
    log.warn(failure(5), 'connection rejected'); // another message
    log.error(failure(6), 'authentication failed'); // another level
    log.warn(failure(7), 'authentication failed'); // a repeat
    expect(lines.map((line) => [line.level, line.message, line.fields['peer'], line.fields['code']])).toEqual([
      ['warn', 'authentication failed', '192.0.2.7:1', 'ETCP_ERR_AUTH'],
      ['warn', 'authentication failed', '192.0.2.7:3', 'ETCP_ERR_HANDSHAKE'],
      ['warn', 'authentication failed', '192.0.2.8:4', 'ETCP_ERR_AUTH'],
      ['warn', 'connection rejected', '192.0.2.7:5', 'ETCP_ERR_AUTH'],
      ['error', 'authentication failed', '192.0.2.7:6', 'ETCP_ERR_AUTH'],
    ]);
    await clock.advance(REPEAT_INTERVAL_MS);
    expect(lines.slice(5).map((line) => [line.message, line.fields['peer']])).toEqual([
      ['authentication failed (repeated 2 times in the last 15 s)', '192.0.2.7:7'],
    ]);
  });

  it('flush() writes the open counts at once, says "1 time", and leaves no timer behind', async () => {
    const { log, lines, clock } = collapsing();
    log.warn(failure(1), 'authentication failed');
    log.warn(failure(2), 'authentication failed');
    log.info({ server: 'x' }, 'connect attempt failed'); // no repeats: nothing to add
    await clock.advance(4000);
    log.flush();
    expect(lines.map((line) => line.message)).toEqual([
      'authentication failed',
      'connect attempt failed',
      'authentication failed (repeated 1 time in the last 4 s)',
    ]);
    expect(clock.pendingTimers).toBe(0);
    log.flush();
    expect(lines).toHaveLength(3);
    // A line after the flush starts afresh.
    log.warn(failure(3), 'authentication failed');
    expect(lines).toHaveLength(4);
  });

  it(`follows at most ${MAX_REPEAT_KINDS} kinds; past them, new kinds are counted by level and message alone`, async () => {
    const { log, lines, clock } = collapsing();
    const host = (i: number): LogFields => ({ peer: `10.0.${i >> 8}.${i & 255}:5000`, code: 'ETCP_ERR_AUTH' });
    const hosts = MAX_REPEAT_KINDS + 100;
    for (let i = 0; i < hosts; i++) log.warn(host(i), 'authentication failed');
    // Each followed kind, then the first past the limit, which opens the catch-all kind.
    expect(lines).toHaveLength(MAX_REPEAT_KINDS + 1);
    expect(clock.pendingTimers).toBe(MAX_REPEAT_KINDS + 1);
    await clock.advance(REPEAT_INTERVAL_MS);
    expect(lines.slice(MAX_REPEAT_KINDS + 1)).toEqual([
      expect.objectContaining({ message: 'authentication failed (repeated 99 times in the last 15 s)', fields: { ...host(hosts - 1), repeated: 99 } }),
    ]);
  });
});
