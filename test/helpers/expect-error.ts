import { expect } from 'vitest';
import type { EternalError, EternalErrorCode } from '../../common/support/errors.js';

/** What `fn` throws; fails the test if it throws nothing. */
export function catchError(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected a throw');
}

/** Runs `fn` and checks that it throws our error: its class, its `code` and its exact message. */
export function expectEternalError(
  fn: () => unknown,
  errorClass: abstract new (...args: never[]) => EternalError,
  code: EternalErrorCode,
  message: string,
): void {
  const caught = catchError(fn);
  expect(caught).toBeInstanceOf(errorClass);
  expect((caught as EternalError).code).toBe(code);
  expect((caught as EternalError).message).toBe(message);
}
