import { expect } from 'vitest';
import type { EternalError, EternalErrorCode } from '../../common/errors.js';

/** Runs `fn` and checks that it throws our error: its class, its `code` and its exact message. */
export function expectEternalError(
  fn: () => unknown,
  errorClass: abstract new (...args: never[]) => EternalError,
  code: EternalErrorCode,
  message: string,
): void {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(errorClass);
  expect((caught as EternalError).code).toBe(code);
  expect((caught as EternalError).message).toBe(message);
}
