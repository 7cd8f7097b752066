import type { ClientConfig } from './config.js';

/**
 * Authentication failures in a row after which the client gives up its sessions (see
 * ClientEndpoint #onAuthenticationFailure) and its retries slow down (authenticationRetryStepMs).
 */
export const AUTHENTICATION_FAILURES_TO_GIVE_UP = 3;

/**
 * The longest wait between attempts that the server refuses for our credentials. A wrong secret
 * does not fix itself: retrying it every second only fills both sides' logs. Fixed, it is still
 * picked up within this long.
 */
export const AUTHENTICATION_MAX_DELAY_MS = 30_000;

export type BackoffConfig = Pick<ClientConfig, 'reconnectBaseDelayMs' | 'reconnectMaxDelayMs'>;

/**
 * The backoff step after the `failures`-th failed attempt (from 1) since the link was last up:
 * reconnectBaseDelayMs, doubled each time, capped at reconnectMaxDelayMs (1 s by default). Kept
 * short: after a roam the path is usually back within a second.
 */
export function networkRetryStepMs(failures: number, config: BackoffConfig): number {
  return Math.min(config.reconnectMaxDelayMs, config.reconnectBaseDelayMs * 2 ** Math.min(Math.max(failures, 1) - 1, 30));
}

/**
 * The backoff step after the `failures`-th authentication failure in a row (from 1). Before the
 * client gives up, the network schedule: one failure can be injected on the path, and the retry
 * must come soon. From the give-up on, reconnectMaxDelayMs (where the network schedule stops),
 * doubled each time up to AUTHENTICATION_MAX_DELAY_MS: 1, 2, 4, 8, 16, 30, 30 … s by default.
 */
export function authenticationRetryStepMs(failures: number, config: BackoffConfig): number {
  if (failures < AUTHENTICATION_FAILURES_TO_GIVE_UP) return networkRetryStepMs(failures, config);
  const maxMs = Math.max(AUTHENTICATION_MAX_DELAY_MS, config.reconnectMaxDelayMs);
  return Math.min(maxMs, config.reconnectMaxDelayMs * 2 ** Math.min(failures - AUTHENTICATION_FAILURES_TO_GIVE_UP, 30));
}

/**
 * A delay of 50 % to 100 % of `stepMs`, by `random` in [0, 1): many clients cut off together do
 * not all redial in the same instant.
 */
export function jitteredDelayMs(stepMs: number, random: number): number {
  return Math.round(stepMs * (0.5 + random * 0.5));
}
