import { pino, type Level } from 'pino';
import pinoPretty from 'pino-pretty';
import type { Logger } from '../support/logger.js';

export const LOG_LEVELS = ['silent', 'error', 'warn', 'info', 'debug', 'trace'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const LOG_FORMATS = ['auto', 'pretty', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/**
 * The proxies' logger: one line per event on stderr, written synchronously so that nothing is lost
 * when the process exits. `auto` prints readable lines on a terminal and JSON lines otherwise.
 */
export function createProcessLogger(name: string, level: LogLevel, format: LogFormat): Logger {
  const pretty = format === 'pretty' || (format === 'auto' && process.stderr.isTTY === true);
  const destination = pretty
    ? pinoPretty({ destination: 2, sync: true, singleLine: true, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' })
    : pino.destination({ fd: 2, sync: true });
  const base = pino({ name, level: level as Level | 'silent', base: { name } }, destination);
  return {
    debug: (fields, message) => base.debug(fields, message),
    info: (fields, message) => base.info(fields, message),
    warn: (fields, message) => base.warn(fields, message),
    error: (fields, message) => base.error(fields, message),
  };
}
