import { existsSync, readFileSync, statSync, type Stats } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Argv } from 'yargs';
import { DEFAULT_ENGINE_CONFIG } from '../engine/config.js';
import { ConfigError } from '../support/errors.js';
import { MAX_PAYLOAD_BYTES } from '../protocol/constants.js';
import { validateSecret } from '../transport/tls-psk.js';
import { parseHostPort, type HostPort } from '../transport/address.js';
import { LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from './log-setup.js';
import { secretFileModeWarning, type SecretFileWarning } from './secret-file-mode.js';

/** Flags that cproxy and sproxy share, with their defaults (DESIGN.md "Defaults"). */
export interface SharedCliOptions {
  /** The shared secret that keys the TLS link, or null for a plain (insecure) link. */
  secret: Buffer | null;
  /** Set when the secret's file lets group or others read or write it; logged once the logger exists. */
  secretFileWarning: SecretFileWarning | null;
  heartbeatIntervalMs: number;
  deadAfterMs: number;
  resumeWindowMs: number;
  /** Unacknowledged bytes each session may have in flight towards the peer (its send window), at first. */
  windowBytes: number;
  /** What a session's window may grow to on a long fat path; undefined: the default, or the window if larger. */
  maxWindowBytes: number | undefined;
  /** Bytes all sessions together may hold in their send queues. */
  sendBudgetBytes: number;
  logLevel: LogLevel;
  logFormat: LogFormat;
  /** Where to serve GET /metrics (Prometheus text format); null: no metrics server. */
  metrics: HostPort | null;
}

/** The host --metrics listens on when it is given a port alone: metrics are for this machine unless asked otherwise. */
export const METRICS_DEFAULT_HOST = '127.0.0.1';

/** The flags that may be given more than once (yargs `array: true`), each with its aliases. */
export const REPEATABLE_FLAGS: ReadonlySet<string> = new Set(['local-forward', 'localForward', 'L', 'dynamic-forward', 'dynamicForward', 'D', 'remote-forward', 'remoteForward', 'R', 'allow', 'allow-listen', 'allowListen', 'ssh-option', 'sshOption']);

export function addSharedOptions<T>(argv: Argv<T>) {
  return argv
    // Given twice, a flag that is not repeatable would reach its parser as a list: say so instead.
    .check((parsed) => {
      for (const [flag, value] of Object.entries(parsed)) {
        if (Array.isArray(value) && flag !== '_' && !REPEATABLE_FLAGS.has(flag)) throw new UsageError(`--${flag} is given more than once`);
      }
      return true;
    })
    .option('config', {
      type: 'string',
      describe:
        'read settings from FILE, YAML with one "flag: value" per line named as the long flags ' +
        '(listen: 0.0.0.0:6200; a list for a repeatable flag; true/false for a switch); flags given override it',
      requiresArg: true,
    })
    .option('secret-file', {
      type: 'string',
      describe:
        'encrypt and authenticate the link with the secret in FILE (the same on both sides; ' +
        'or set ETERNAL_TCP_SECRET_FILE, or ETERNAL_TCP_SECRET to the secret itself)',
      requiresArg: true,
    })
    .option('heartbeat-interval', {
      type: 'string',
      default: '1000',
      describe: 'send a heartbeat on the link every MS milliseconds',
      requiresArg: true,
    })
    .option('dead-after', {
      type: 'string',
      default: '3000',
      describe: 'declare the link dead after MS milliseconds without a packet',
      requiresArg: true,
    })
    .option('resume-window', {
      type: 'string',
      default: '86400',
      describe: 'keep sessions this many SECONDS while the link is down',
      requiresArg: true,
    })
    .option('window', {
      type: 'string',
      default: String(DEFAULT_ENGINE_CONFIG.windowBytes / 1024),
      describe:
        'let each session have at most KIB kibibytes sent and not yet acknowledged; smaller keeps ' +
        'keystrokes quicker beside a bulk transfer on the same link, larger lets bulk go faster',
      requiresArg: true,
    })
    .option('max-window', {
      type: 'string',
      describe:
        `let a session's window grow up to KIB kibibytes where the path's bandwidth-delay product calls ` +
        `for it (default ${DEFAULT_ENGINE_CONFIG.maxWindowBytes / 1024}, or --window if larger; equal to --window: never grow)`,
      requiresArg: true,
    })
    .option('send-budget', {
      type: 'string',
      default: String(DEFAULT_ENGINE_CONFIG.sendBudgetBytes / (1024 * 1024)),
      describe: 'hold at most MIB mebibytes in all sessions\' send queues together (each keeps a small share beyond it)',
      requiresArg: true,
    })
    .option('log-level', { choices: LOG_LEVELS, default: 'info' as LogLevel, describe: 'least severe level logged' })
    .option('log-format', {
      choices: LOG_FORMATS,
      default: 'auto' as LogFormat,
      describe: 'log lines on stderr: readable, JSON, or readable only on a terminal',
    })
    .option('metrics', {
      type: 'string',
      describe:
        `serve Prometheus metrics (GET /metrics) on [HOST:]PORT (${METRICS_DEFAULT_HOST} if no HOST; ` +
        'port 0: any free port, logged); none by default',
      requiresArg: true,
    });
}

/** Parses a whole number of `unit` from a flag, with a one-line reason when it is not one. */
export function parsePositiveInteger(text: string | number, flag: string, min = 1, max = 2 ** 31 - 1): number {
  const value = typeof text === 'number' ? text : /^\d+$/.test(text.trim()) ? Number(text.trim()) : Number.NaN;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`--${flag} must be a whole number from ${min} to ${max}, got "${text}"`);
  }
  return value;
}

/** The shared secret (null: none given), and a warning when its file lets others at it. */
export interface SecretReading {
  secret: Buffer | null;
  fileWarning: SecretFileWarning | null;
}

/**
 * The shared secret: --secret-file, else ETERNAL_TCP_SECRET_FILE, else ETERNAL_TCP_SECRET.
 * Surrounding white space (a trailing newline above all) is not part of it.
 */
export function readSecret(secretFile: string | undefined, env: NodeJS.ProcessEnv = process.env): SecretReading {
  const file = secretFile ?? env['ETERNAL_TCP_SECRET_FILE'];
  if (file !== undefined && file !== '') {
    let bytes: Buffer;
    let stats: Stats;
    try {
      bytes = readFileSync(file);
      stats = statSync(file);
    } catch (error) {
      throw new ConfigError(`cannot read the secret file ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
    }
    // Only a regular file's mode says who may read it (a pipe from `<(...)` has one of its own),
    // and Windows makes one up from the read-only flag: 0666 for every writable file.
    const modeTells = stats.isFile() && process.platform !== 'win32';
    // Bytes, not text: a binary secret must keep every bit of its randomness.
    return {
      secret: validateSecret(trimAsciiWhitespace(bytes), file),
      fileWarning: modeTells ? secretFileModeWarning(file, stats.mode) : null,
    };
  }
  const inline = env['ETERNAL_TCP_SECRET'];
  const secret = inline !== undefined && inline !== '' ? validateSecret(Buffer.from(inline.trim(), 'utf8'), 'ETERNAL_TCP_SECRET') : null;
  return { secret, fileWarning: null };
}

/** Drops spaces, tabs and line ends at both ends (the newline an editor or `echo` adds). */
export function trimAsciiWhitespace(bytes: Buffer): Buffer {
  const isSpace = (byte: number | undefined): boolean => byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0d;
  let start = 0;
  let end = bytes.length;
  while (start < end && isSpace(bytes[start])) start++;
  while (end > start && isSpace(bytes[end - 1])) end--;
  return bytes.subarray(start, end);
}

export function readSharedOptions(args: Record<string, unknown>): SharedCliOptions {
  const heartbeatIntervalMs = parsePositiveInteger(args['heartbeat-interval'] as string, 'heartbeat-interval', 10);
  const deadAfterMs = parsePositiveInteger(args['dead-after'] as string, 'dead-after', 20);
  if (deadAfterMs <= heartbeatIntervalMs) {
    throw new ConfigError(`--dead-after (${deadAfterMs}) must be longer than --heartbeat-interval (${heartbeatIntervalMs})`);
  }
  // At least one whole frame, or a maximal DATA could never be sent.
  const windowBytes = parsePositiveInteger(args['window'] as string, 'window', MAX_PAYLOAD_BYTES / 1024, 1024 * 1024) * 1024;
  const maxWindowText = args['max-window'] as string | undefined;
  const maxWindowBytes = maxWindowText === undefined ? undefined : parsePositiveInteger(maxWindowText, 'max-window', 1, 1024 * 1024) * 1024;
  if (maxWindowBytes !== undefined && maxWindowBytes < windowBytes) {
    throw new ConfigError(`--max-window (${maxWindowBytes / 1024}) must be at least --window (${windowBytes / 1024})`);
  }
  const { secret, fileWarning } = readSecret(args['secret-file'] as string | undefined);
  return {
    secret,
    secretFileWarning: fileWarning,
    heartbeatIntervalMs,
    deadAfterMs,
    resumeWindowMs: parsePositiveInteger(args['resume-window'] as string, 'resume-window', 1, 2_147_483) * 1000,
    windowBytes,
    maxWindowBytes,
    sendBudgetBytes: parsePositiveInteger(args['send-budget'] as string, 'send-budget', 1, 1024 * 1024) * 1024 * 1024,
    logLevel: args['log-level'] as LogLevel,
    logFormat: args['log-format'] as LogFormat,
    metrics: args['metrics'] === undefined ? null : parseHostPort(String(args['metrics']), '--metrics', METRICS_DEFAULT_HOST, true),
  };
}

/** The version in the package.json above this module, in the source tree and in dist/ alike. */
export function packageVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'package.json');
    if (existsSync(candidate)) {
      const parsed = JSON.parse(readFileSync(candidate, 'utf8')) as { name?: string; version?: string };
      if (parsed.name === 'eternal-tcp' && parsed.version !== undefined) return parsed.version;
    }
    const parent = dirname(dir);
    if (parent === dir) return 'unknown';
    dir = parent;
  }
}

/** Thrown by the yargs failure handler so that bad input ends in one line, not a usage dump. */
export class UsageError extends Error {}

/** The program could not start for a reason outside its flags (ssh failed, a port unreachable): one line, status 1. */
export class StartupError extends Error {}

export function failWithUsageError(message: string | null | undefined, error: Error | undefined): never {
  // yargs spreads some messages over lines; the reason is meant to fit on one.
  throw new UsageError((message ?? error?.message ?? 'invalid arguments').replace(/\s*\n\s*/g, ' '));
}

/**
 * Runs a CLI's main: a ConfigError or UsageError becomes `name: reason` on one line and exit
 * status 2, a StartupError the same with status 1; anything else is a crash and says so.
 */
export function runCli(name: string, main: () => Promise<void>): void {
  main().catch((error: unknown) => {
    if (error instanceof UsageError || error instanceof ConfigError) {
      process.stderr.write(`${name}: ${error.message} (see ${name} --help)\n`);
      process.exit(2);
    }
    if (error instanceof StartupError) {
      process.stderr.write(`${name}: ${error.message}\n`);
      process.exit(1);
    }
    const listen = error as NodeJS.ErrnoException;
    if (listen.code === 'EADDRINUSE' || listen.code === 'EACCES' || listen.code === 'EADDRNOTAVAIL') {
      process.stderr.write(`${name}: cannot listen: ${listen.message}\n`);
      process.exit(1);
    }
    process.stderr.write(`${name}: fatal: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  });
}

/**
 * SIGINT/SIGTERM: run `shutdown` once, then exit 0; a second signal or a stuck shutdown forces
 * the exit after `graceMs`.
 */
export function exitOnSignals(shutdown: () => Promise<void>, graceMs = 3000): void {
  let stopping = false;
  const onSignal = (): void => {
    if (stopping) process.exit(0);
    stopping = true;
    setTimeout(() => process.exit(0), graceMs).unref();
    shutdown().then(
      () => process.exit(0),
      () => process.exit(0),
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}
