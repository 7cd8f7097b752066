import { describe, expect, it } from 'vitest';
import { DEFAULT_ENGINE_CONFIG, validateEngineConfig, type EngineConfig } from '../../../common/engine/config.js';
import {
  DEFAULT_CLIENT_CONFIG,
  DEFAULT_SERVER_CONFIG,
  resolveClientConfig,
  resolveServerConfig,
} from '../../../common/endpoints/config.js';
import { ConfigError } from '../../../common/support/errors.js';
import { MAX_PAYLOAD_BYTES } from '../../../common/protocol/constants.js';
import { expectEternalError } from '../../helpers/expect-error.js';

function expectConfigError(fn: () => unknown, message: string): void {
  expectEternalError(fn, ConfigError, 'ETCP_ERR_CONFIG', message);
}

describe('defaults', () => {
  it('match the design brief and are valid', () => {
    expect(DEFAULT_ENGINE_CONFIG.heartbeatIntervalMs).toBe(1000);
    expect(DEFAULT_ENGINE_CONFIG.deadAfterMs).toBe(3000);
    expect(DEFAULT_ENGINE_CONFIG.resumeWindowMs).toBe(24 * 60 * 60 * 1000);
    expect(DEFAULT_ENGINE_CONFIG.maxFramePayloadBytes).toBeLessThanOrEqual(MAX_PAYLOAD_BYTES);
    expect(() => validateEngineConfig(DEFAULT_ENGINE_CONFIG)).not.toThrow();
    expect(resolveClientConfig()).toEqual(DEFAULT_CLIENT_CONFIG);
    expect(resolveServerConfig()).toEqual(DEFAULT_SERVER_CONFIG);
  });

  it('applies overrides and ignores undefined values', () => {
    const client = resolveClientConfig({ heartbeatIntervalMs: 200, deadAfterMs: undefined, connectTimeoutMs: 500 });
    expect(client.heartbeatIntervalMs).toBe(200);
    expect(client.deadAfterMs).toBe(DEFAULT_CLIENT_CONFIG.deadAfterMs);
    expect(client.connectTimeoutMs).toBe(500);
    const server = resolveServerConfig({ windowBytes: undefined, resumeWindowMs: 60_000 });
    expect(server.windowBytes).toBe(DEFAULT_SERVER_CONFIG.windowBytes);
    expect(server.resumeWindowMs).toBe(60_000);
  });

  it('a window set above the default growth cap is the cap too, unless a cap is given; a cap under the window is refused', () => {
    expect(resolveClientConfig({ windowBytes: 32 * 2 ** 20 }).maxWindowBytes).toBe(32 * 2 ** 20);
    expect(resolveServerConfig({ windowBytes: 2 ** 20 }).maxWindowBytes).toBe(DEFAULT_SERVER_CONFIG.maxWindowBytes);
    expect(resolveServerConfig({ windowBytes: 2 ** 20, maxWindowBytes: 2 ** 20 }).maxWindowBytes).toBe(2 ** 20);
    expect(() => resolveClientConfig({ windowBytes: 2 ** 22, maxWindowBytes: 2 ** 21 })).toThrow(
      `maxWindowBytes must be an integer from ${2 ** 22} to ${2 ** 30}, got ${2 ** 21}`,
    );
  });

  it('does not let resolve* mutate the defaults', () => {
    const before = { ...DEFAULT_CLIENT_CONFIG };
    resolveClientConfig({ heartbeatIntervalMs: 50, deadAfterMs: 150 });
    expect(DEFAULT_CLIENT_CONFIG).toEqual(before);
  });
});

describe('validation', () => {
  it.each([1000, 999, 20])('rejects deadAfterMs = %d with heartbeatIntervalMs = 1000', (deadAfterMs) => {
    const message = `deadAfterMs (${deadAfterMs}) must be longer than heartbeatIntervalMs (1000)`;
    expectConfigError(() => resolveClientConfig({ heartbeatIntervalMs: 1000, deadAfterMs }), message);
    expectConfigError(() => resolveServerConfig({ heartbeatIntervalMs: 1000, deadAfterMs }), message);
    expectConfigError(() => validateEngineConfig({ ...DEFAULT_ENGINE_CONFIG, heartbeatIntervalMs: 1000, deadAfterMs }), message);
  });

  it('accepts deadAfterMs one millisecond longer than the heartbeat', () => {
    expect(resolveServerConfig({ heartbeatIntervalMs: 1000, deadAfterMs: 1001 }).deadAfterMs).toBe(1001);
  });

  it.each<[keyof EngineConfig, number, string]>([
    ['heartbeatIntervalMs', 1.5, 'heartbeatIntervalMs must be an integer from 10 to 2147483647, got 1.5'],
    ['heartbeatIntervalMs', 9, 'heartbeatIntervalMs must be an integer from 10 to 2147483647, got 9'],
    ['deadAfterMs', 2 ** 31, 'deadAfterMs must be an integer from 20 to 2147483647, got 2147483648'],
    ['maxFramePayloadBytes', 0, `maxFramePayloadBytes must be an integer from 1 to ${MAX_PAYLOAD_BYTES}, got 0`],
    [
      'maxFramePayloadBytes',
      MAX_PAYLOAD_BYTES + 1,
      `maxFramePayloadBytes must be an integer from 1 to ${MAX_PAYLOAD_BYTES}, got ${MAX_PAYLOAD_BYTES + 1}`,
    ],
    ['windowBytes', 1000, `windowBytes must be an integer from ${DEFAULT_ENGINE_CONFIG.maxFramePayloadBytes} to ${2 ** 30}, got 1000`],
    ['sharedLinkInFlightBytes', -1, `sharedLinkInFlightBytes must be an integer from 0 to ${2 ** 30}, got -1`],
    ['sharedLinkHoldMs', 0.5, 'sharedLinkHoldMs must be an integer from 0 to 2147483647, got 0.5'],
    ['linkWriteHighWaterBytes', 0, `linkWriteHighWaterBytes must be an integer from 1 to ${2 ** 30}, got 0`],
    ['sessionReadableHighWaterBytes', -1, `sessionReadableHighWaterBytes must be an integer from 1 to ${2 ** 30}, got -1`],
    ['sessionWritableHighWaterBytes', Number.NaN, `sessionWritableHighWaterBytes must be an integer from 1 to ${2 ** 30}, got NaN`],
    ['resumeWindowMs', 0, 'resumeWindowMs must be an integer from 1 to 2147483647, got 0'],
  ])('rejects %s = %d', (field, value, message) => {
    expectConfigError(() => resolveServerConfig({ [field]: value }), message);
  });

  it('rejects client reconnect settings out of range', () => {
    expectConfigError(
      () => resolveClientConfig({ connectTimeoutMs: 0 }),
      'connectTimeoutMs must be an integer from 1 to 2147483647, got 0',
    );
    expectConfigError(
      () => resolveClientConfig({ reconnectBaseDelayMs: 500, reconnectMaxDelayMs: 100 }),
      'reconnectMaxDelayMs must be an integer from 500 to 2147483647, got 100',
    );
    expectConfigError(
      () => resolveClientConfig({ connectTimeoutMs: 400, connectStaggerMs: 500 }),
      'connectStaggerMs must be an integer from 1 to 400, got 500',
    );
    expectConfigError(() => resolveClientConfig({ connectStaggerMs: 0 }), 'connectStaggerMs must be an integer from 1 to 2000, got 0');
    // Not given, the stagger follows a connect timeout shorter than its default.
    expect(resolveClientConfig({ connectTimeoutMs: 200 }).connectStaggerMs).toBe(200);
    expect(resolveClientConfig({ connectTimeoutMs: 400 }).connectStaggerMs).toBe(250);
    expect(resolveClientConfig({}).connectStaggerMs).toBe(250);
  });
});
